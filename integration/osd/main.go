// Command osd-harness runs the real OpenStorage SDK gRPC server (the API Portworx serves)
// for stork's e2e tests: real cluster manager, in-memory kvdb, the real `fake` volume
// driver, and two shims for what the fake lacks (a test-controlled node list and runtime
// replica sets). See README.md for the flags and the control API.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

type options struct {
	sdkPort        int
	gatewayPort    int
	gossipPort     int
	controlAddr    string
	stateDir       string
	clusterID      string
	jwtSecret      string
	jwtIssuer      string
	nodesFile      string
	tlsCert        string
	tlsKey         string
	disableGuest   bool
	exitWithParent bool
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("osd-harness", flag.ContinueOnError)
	fs.IntVar(&o.sdkPort, "sdk-port", -1, "SDK gRPC port on 127.0.0.1 (required; 0 = kernel picks, printed in the ready line)")
	fs.IntVar(&o.gatewayPort, "gateway-port", 0, "SDK REST gateway port; the SDK binds it on all interfaces (0 = kernel picks)")
	fs.IntVar(&o.gossipPort, "gossip-port", 0, "cluster manager gossip port on 127.0.0.1, TCP+UDP (0 = pick a free one)")
	fs.StringVar(&o.controlAddr, "control-addr", "127.0.0.1:0", "HTTP control endpoint address (port 0 = kernel picks)")
	fs.StringVar(&o.stateDir, "state-dir", "", "directory for every file the harness writes (required; created if missing)")
	fs.StringVar(&o.clusterID, "cluster-id", "stork-e2e", "cluster id")
	fs.StringVar(&o.jwtSecret, "jwt-shared-secret", "", "turn SDK auth on with an HS256 shared-secret authenticator")
	fs.StringVar(&o.jwtIssuer, "jwt-issuer", "stork-e2e", "issuer (iss) the shared-secret authenticator is registered for")
	fs.StringVar(&o.nodesFile, "nodes", "", "initial node list (JSON, same shape as PUT /nodes)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate (chain) for TLS on the SDK gRPC port and the REST gateway (needs --tls-key)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key for --tls-cert")
	fs.BoolVar(&o.disableGuest, "disable-guest-access", false,
		"with auth on, make the system.guest role deny everything, so calls without a token fail")
	fs.BoolVar(&o.exitWithParent, "exit-with-parent", false,
		"die with the process that started this one (set here: a credential change, as setpriv makes, clears an inherited setting)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	switch {
	case o.sdkPort < 0 || o.sdkPort > 65535:
		return nil, errors.New("--sdk-port is required (0..65535)")
	case o.gatewayPort < 0 || o.gatewayPort > 65535 || o.gossipPort < 0 || o.gossipPort > 65535:
		return nil, errors.New("--gateway-port / --gossip-port out of range")
	case o.stateDir == "":
		return nil, errors.New("--state-dir is required")
	case o.clusterID == "":
		return nil, errors.New("--cluster-id must not be empty")
	case o.disableGuest && o.jwtSecret == "":
		return nil, errors.New("--disable-guest-access needs --jwt-shared-secret")
	case (o.tlsCert == "") != (o.tlsKey == ""):
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err == flag.ErrHelp {
		os.Exit(0)
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "osd-harness:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "osd-harness:", err)
		os.Exit(1)
	}
}

func run(o *options) error {
	// stdout carries only the ready line; all logging goes to stderr.
	logrus.SetOutput(os.Stderr)
	if o.exitWithParent {
		parent := os.Getppid()
		if _, _, err := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0); err != 0 {
			return fmt.Errorf("prctl(PR_SET_PDEATHSIG): %v", err)
		}
		// The parent may have died before the setting took effect.
		if os.Getppid() != parent {
			return errors.New("the parent process is gone")
		}
	}
	warnInitSideEffects()

	if err := os.MkdirAll(o.stateDir, 0o700); err != nil {
		return err
	}
	stateDir, err := filepath.Abs(o.stateDir)
	if err != nil {
		return err
	}

	nodes := newNodeStore()
	if o.nodesFile != "" {
		if err := loadNodes(nodes, o.nodesFile); err != nil {
			return err
		}
	}

	// The SDK loads the key pair only in Start (and the gateway again in a goroutine that
	// exits the process on error), so check it here, before anything starts.
	if o.tlsCert != "" {
		if _, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey); err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %v", err)
		}
	}

	// Bind the control endpoint before starting anything, so a bad address fails fast.
	controlLn, err := net.Listen("tcp", o.controlAddr)
	if err != nil {
		return fmt.Errorf("control endpoint: %v", err)
	}

	osd, err := startOSD(o, stateDir, nodes)
	if err != nil {
		controlLn.Close()
		return err
	}

	var minter *tokenMinter
	if o.jwtSecret != "" {
		minter = &tokenMinter{issuer: o.jwtIssuer, secret: o.jwtSecret}
	}
	control := &http.Server{Handler: controlHandler(nodes, minter), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := control.Serve(controlLn); err != nil && err != http.ErrServerClosed {
			logrus.Fatalf("control endpoint: %v", err)
		}
	}()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	fmt.Printf("osd-harness ready sdk=%s control=%s\n", osd.sdkAddr, controlLn.Addr())
	os.Stdout.Sync()

	sig := <-sigs
	logrus.Infof("osd-harness: %v, shutting down", sig)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	control.Shutdown(ctx)
	osd.stop(5 * time.Second)
	return nil
}

func loadNodes(nodes *nodeStore, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--nodes: %v", err)
	}
	var list []nodeSpec
	if err := json.Unmarshal(data, &list); err != nil {
		return fmt.Errorf("--nodes %s: %v", path, err)
	}
	if err := nodes.replace(list); err != nil {
		return fmt.Errorf("--nodes %s: %v", path, err)
	}
	return nil
}

// warnInitSideEffects reports what dependencies' init() functions did before main ran,
// which no flag can prevent (see README.md, "Files").
func warnInitSideEffects() {
	if os.Geteuid() == 0 {
		logrus.Warn("osd-harness: running as root, so openstorage's config package init() has created " +
			"/var/lib/osd/mounts and /var/lib/osd/graphdriver; run it as an unprivileged user " +
			"(setpriv --reuid=nobody --regid=nogroup --clear-groups) to avoid that")
	}
	// envy sets GOPATH itself after asking `go`, so look at the environment we started with.
	env, err := os.ReadFile("/proc/self/environ")
	if err == nil && !bytes.Contains(append([]byte{0}, env...), []byte("\x00GOPATH=")) {
		logrus.Warn("osd-harness: GOPATH was not set, so packr's dependency envy ran `go env GOPATH` in an init() " +
			"(the go command may write under $HOME/.config/go); set GOPATH to any value to avoid that")
	}
}

// freeGossipPort finds a port free for both TCP and UDP on 127.0.0.1: gossip
// (hashicorp memberlist) binds both, and Go cannot hand it a pre-bound socket.
func freeGossipPort() (int, error) {
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, errors.New("no port free for both TCP and UDP on 127.0.0.1")
}
