package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/libopenstorage/openstorage/api"
	"github.com/libopenstorage/openstorage/api/server/sdk"
	"github.com/libopenstorage/openstorage/cluster"
	clustermanager "github.com/libopenstorage/openstorage/cluster/manager"
	"github.com/libopenstorage/openstorage/config"
	"github.com/libopenstorage/openstorage/objectstore"
	"github.com/libopenstorage/openstorage/pkg/auth"
	"github.com/libopenstorage/openstorage/pkg/auth/systemtoken"
	"github.com/libopenstorage/openstorage/pkg/role"
	"github.com/libopenstorage/openstorage/pkg/sched"
	policy "github.com/libopenstorage/openstorage/pkg/storagepolicy"
	"github.com/libopenstorage/openstorage/schedpolicy"
	"github.com/libopenstorage/openstorage/volume"
	volumedrivers "github.com/libopenstorage/openstorage/volume/drivers"
	"github.com/libopenstorage/openstorage/volume/drivers/fake"
	"github.com/portworx/kvdb"
	"github.com/portworx/kvdb/mem"
	"github.com/sirupsen/logrus"
)

// selfNodeID is the cluster manager's own node. The node shim hides it: the SDK only
// ever shows the test's node list.
const selfNodeID = "osd-harness"

type osdServer struct {
	sdk     *sdk.Server
	sdkAddr string
	files   []*os.File
	socket  string
}

// startOSD wires the pieces the way cmd/osd does for `--driver name=fake --kvdb
// kv-mem://localhost`, minus what stork never calls (docker plugin, legacy REST, CSI,
// COSI, bucket drivers) and with every file under stateDir. It returns once the
// cluster manager has quorum and the SDK listens.
func startOSD(o *options, stateDir string, nodes *nodeStore) (*osdServer, error) {
	kv, err := kvdb.New(mem.Name, "openstorage", []string{"http://localhost"}, nil, kvdb.LogFatalErrorCB)
	if err != nil {
		return nil, fmt.Errorf("kvdb: %v", err)
	}
	if err := kvdb.SetInstance(kv); err != nil {
		return nil, fmt.Errorf("kvdb: %v", err)
	}

	authenticators := map[string]auth.Authenticator{}
	if o.jwtSecret != "" {
		a, err := auth.NewJwtAuth(&auth.JwtAuthConfig{
			SharedSecret:  []byte(o.jwtSecret),
			UsernameClaim: auth.UsernameClaimTypeSubject,
		})
		if err != nil {
			return nil, fmt.Errorf("jwt authenticator: %v", err)
		}
		authenticators[o.jwtIssuer] = a
		// As cmd/osd does: with auth on, a system token manager must exist. auth.Enabled()
		// (which the SDK consults for volume ownership checks) is true only once it does.
		// Its secret signs node-to-node tokens only, which nothing here uses.
		stm, err := systemtoken.NewManager(&systemtoken.Config{
			ClusterId: o.clusterID, NodeId: selfNodeID, SharedSecret: randomSecret(),
		})
		if err != nil {
			return nil, fmt.Errorf("system token manager: %v", err)
		}
		auth.InitSystemTokenManager(stm)
	}

	// The cluster manager's own node advertises 127.0.0.1: its gossip listens there.
	if err := clustermanager.Init(config.ClusterConfig{
		ClusterId: o.clusterID, NodeId: selfNodeID, MgmtIp: "127.0.0.1", DataIp: "127.0.0.1",
	}); err != nil {
		return nil, fmt.Errorf("cluster manager: %v", err)
	}
	cm, err := clustermanager.Inst()
	if err != nil {
		return nil, err
	}

	// The real fake driver, from the same registry the SDK looks drivers up in.
	if err := volumedrivers.Register(fake.Name, map[string]string{}); err != nil {
		return nil, fmt.Errorf("fake driver: %v", err)
	}
	fakeDriver, err := volumedrivers.Get(fake.Name)
	if err != nil {
		return nil, err
	}
	driver := &replicaDriver{VolumeDriver: fakeDriver}

	sched.Init(time.Second)
	rm, err := role.NewSdkRoleManager(kv)
	if err != nil {
		return nil, fmt.Errorf("role manager: %v", err)
	}
	sp, err := policy.Init()
	if err != nil {
		return nil, fmt.Errorf("storage policy manager: %v", err)
	}

	gossipPort := o.gossipPort
	if gossipPort == 0 {
		if gossipPort, err = freeGossipPort(); err != nil {
			return nil, err
		}
	}
	logrus.Infof("osd-harness: starting cluster manager (gossip 127.0.0.1:%d)", gossipPort)
	if err := cm.StartWithConfiguration(false, strconv.Itoa(gossipPort), []string{}, "",
		&cluster.ClusterServerConfiguration{
			ConfigSchedManager:       schedpolicy.NewFakeScheduler(),
			ConfigObjectStoreManager: objectstore.NewfakeObjectstore(),
			ConfigSystemTokenManager: auth.SystemTokenManagerInst(),
		}); err != nil {
		return nil, fmt.Errorf("cluster manager start: %v", err)
	}

	s := &osdServer{socket: filepath.Join(stateDir, "sdk.sock")}
	// The REST gateway reaches the gRPC server through this unix socket.
	if len(s.socket) > 100 {
		return nil, fmt.Errorf("--state-dir too long for a unix socket path (%s)", s.socket)
	}
	os.Remove(s.socket)
	audit, err := openAppend(filepath.Join(stateDir, "sdk-audit.log"))
	if err != nil {
		return nil, err
	}
	access, err := openAppend(filepath.Join(stateDir, "sdk-access.log"))
	if err != nil {
		return nil, err
	}
	s.files = []*os.File{audit, access}

	srv, err := sdk.New(&sdk.ServerConfig{
		Net:           "tcp",
		Address:       "127.0.0.1:" + strconv.Itoa(o.sdkPort),
		RestPort:      strconv.Itoa(o.gatewayPort),
		Socket:        s.socket,
		AuditOutput:   audit,
		AccessOutput:  access,
		DriverName:    fake.Name,
		Cluster:       &clusterShim{Cluster: cm, nodes: nodes},
		StoragePolicy: sp,
		Security: &sdk.SecurityConfig{
			Role:           rm,
			Authenticators: authenticators,
			Tls:            tlsConfig(o),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("sdk server: %v", err)
	}
	// New looked the unwrapped fake up by name; hand it the wrapped one instead, under
	// the driver's name and the default name the SDK falls back to.
	srv.UseVolumeDrivers(map[string]volume.VolumeDriver{fake.Name: driver, sdk.DefaultDriverName: driver})
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("sdk server start: %v", err)
	}
	s.sdk, s.sdkAddr = srv, srv.Address()

	if o.disableGuest {
		// What an admin does with `pxctl role update` to turn guest access off: the
		// system.guest role is the one mutable default role.
		_, err := rm.Update(context.Background(), &api.SdkRoleUpdateRequest{Role: &api.SdkRole{
			Name:  role.SystemGuestRoleName,
			Rules: []*api.SdkRule{{Services: []string{"!*"}, Apis: []string{"!*"}}},
		}})
		if err != nil {
			return nil, fmt.Errorf("disabling guest access: %v", err)
		}
	}
	return s, nil
}

// stop stops the SDK servers (gRPC Stop is not graceful, so open streams do not hold it
// up), bounded by timeout all the same.
func (s *osdServer) stop(timeout time.Duration) {
	done := make(chan struct{})
	go func() { s.sdk.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		logrus.Warnf("osd-harness: SDK server did not stop within %v", timeout)
	}
	for _, f := range s.files {
		f.Close()
	}
	os.Remove(s.socket)
}

// tlsConfig is the SDK's own TLS setting, as cmd/osd's --tls-cert-file/--tls-key-file
// make it. The SDK then serves TLS on the TCP gRPC port (credentials.NewServerTLSFromFile,
// which advertises ALPN "h2") and HTTPS on the REST gateway with the same key pair. The unix
// socket stays plaintext, and the gateway keeps dialing it without TLS.
func tlsConfig(o *options) *sdk.TLSConfig {
	if o.tlsCert == "" {
		return nil
	}
	return &sdk.TLSConfig{CertFile: o.tlsCert, KeyFile: o.tlsKey}
}

func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
}

func randomSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
