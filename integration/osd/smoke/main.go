// Command osd-smoke drives a running osd-harness through its control API and the real
// OpenStorage SDK gRPC API, asserts what stork relies on, and prints the exact behaviour
// of the calls whose semantics matter to the Rust client (error codes and messages,
// snapshot/clone/restore). Run by ../smoke.sh; not part of the harness binary.
//
//	osd-smoke --sdk 127.0.0.1:P --control http://127.0.0.1:Q --mode plain|auth|auth-noguest
//	osd-smoke --sdk 127.0.0.1:P --control http://127.0.0.1:Q --mode tls --ca ca.pem [--gateway 127.0.0.1:G]
//	osd-smoke --free-port   (prints a TCP port free on 127.0.0.1, for --gateway-port)
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/libopenstorage/openstorage/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

var failures int

func ok(format string, a ...interface{})   { fmt.Printf("  ok    "+format+"\n", a...) }
func info(format string, a ...interface{}) { fmt.Printf("  info  "+format+"\n", a...) }
func fail(format string, a ...interface{}) {
	failures++
	fmt.Printf("  FAIL  "+format+"\n", a...)
}
func check(cond bool, format string, a ...interface{}) bool {
	if cond {
		ok(format, a...)
	} else {
		fail(format, a...)
	}
	return cond
}
func step(s string) { fmt.Printf("\n== %s\n", s) }

// grpcErr renders an error as "Code: message" (or "OK").
func grpcErr(err error) string {
	if err == nil {
		return "OK"
	}
	st := status.Convert(err)
	return fmt.Sprintf("%s: %s", st.Code(), st.Message())
}

type client struct {
	control string
	conn    *grpc.ClientConn
	token   string // sent as "authorization: bearer <token>" when set
}

func (c *client) ctx() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	if c.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "bearer "+c.token)
	}
	return ctx, cancel
}

// withToken returns a copy of the client that sends tok ("" = no token).
func (c *client) withToken(tok string) *client { d := *c; d.token = tok; return &d }

func (c *client) http(method, path, body string) (int, string) {
	req, err := http.NewRequest(method, c.control+path, strings.NewReader(body))
	if err != nil {
		fail("%s %s: %v", method, path, err)
		return 0, ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fail("%s %s: %v", method, path, err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(bytes.TrimSpace(b))
}

func (c *client) mustToken(query string) string {
	code, body := c.http("GET", "/token?"+query, "")
	if !check(code == 200 && strings.Count(body, ".") == 2, "GET /token?%s -> %d, a JWT", query, code) {
		info("body: %s", body)
	}
	return body
}

const threeNodes = `[
 {"id":"px-n1","schedulerNodeName":"n1","hostname":"n1","mgmtIp":"10.0.0.1","dataIp":"10.0.1.1","status":"STATUS_OK","topology":{"topology.portworx.io/zone":"z1"}},
 {"id":"px-n2","schedulerNodeName":"n2","hostname":"n2","mgmtIp":"10.0.0.2","dataIp":"10.0.1.2","status":"STATUS_OK","topology":{"topology.portworx.io/zone":"z2"}},
 {"id":"px-n3","schedulerNodeName":"n3","hostname":"n3","mgmtIp":"10.0.0.3","dataIp":"10.0.1.3","status":"STATUS_STORAGE_DOWN","topology":{"topology.portworx.io/zone":"z3"}}]`

func main() {
	sdkAddr := flag.String("sdk", "", "SDK gRPC address")
	control := flag.String("control", "", "control endpoint base URL")
	mode := flag.String("mode", "plain", "plain (no auth) | auth | auth-noguest | tls")
	caFile := flag.String("ca", "", "with --mode tls: PEM CA that signed the harness's --tls-cert")
	gateway := flag.String("gateway", "", "with --mode tls: REST gateway host:port (optional)")
	freePort := flag.Bool("free-port", false, "print a TCP port free on 127.0.0.1 and exit")
	flag.Parse()
	if *freePort {
		printFreePort()
		return
	}

	security := grpc.WithInsecure()
	if *mode == "tls" {
		security = grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(mustCAPool(*caFile), ""))
	}
	conn, err := grpc.Dial(*sdkAddr, security, grpc.WithBlock(), grpc.WithTimeout(10*time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	defer conn.Close()
	c := &client{control: *control, conn: conn}

	code, _ := c.http("GET", "/healthz", "")
	check(code == 200, "GET /healthz -> %d", code)
	if *mode == "plain" {
		emptyListChecks(c)
	}
	code, body := c.http("PUT", "/nodes", threeNodes)
	check(code == 204, "PUT /nodes (3 nodes) -> %d %s", code, body)

	switch *mode {
	case "plain":
		code, body = c.http("GET", "/token", "")
		check(code == 404, "GET /token with auth off -> %d (%s)", code, body)
		nodeChecks(c)
		volumeChecks(c)
	case "auth":
		authChecks(c, true)
		// Everything stork does, with a system.admin token.
		nodeChecks(c.withToken(c.mustToken("ttl=10m")))
		volumeChecks(c.withToken(c.mustToken("ttl=10m")))
	case "auth-noguest":
		authChecks(c, false)
	case "tls":
		tlsChecks(*sdkAddr, *caFile, *gateway)
		nodeChecks(c)
		volumeChecks(c)
	default:
		fmt.Fprintln(os.Stderr, "unknown --mode", *mode)
		os.Exit(2)
	}
	if failures > 0 {
		fmt.Printf("\n%d check(s) FAILED\n", failures)
		os.Exit(1)
	}
	fmt.Println("\nall checks passed")
}

func authChecks(c *client, guestAllowed bool) {
	step("auth")
	nodes := func(cl *client) error {
		ctx, cancel := cl.ctx()
		defer cancel()
		_, err := api.NewOpenStorageNodeClient(cl.conn).EnumerateWithFilters(ctx, &api.SdkNodeEnumerateWithFiltersRequest{})
		return err
	}
	roles := func(cl *client) error {
		ctx, cancel := cl.ctx()
		defer cancel()
		_, err := api.NewOpenStorageRoleClient(cl.conn).Enumerate(ctx, &api.SdkRoleEnumerateRequest{})
		return err
	}

	valid := c.mustToken("ttl=60s&role=system.admin")
	err := nodes(c.withToken(valid))
	check(err == nil, "valid system.admin token: Node/EnumerateWithFilters -> %s", grpcErr(err))

	err = nodes(c)
	if guestAllowed {
		check(err == nil, "no token (system.guest role, upstream default): Node/EnumerateWithFilters -> %s", grpcErr(err))
		err = roles(c)
		check(status.Code(err).String() == "PermissionDenied",
			"no token, API outside system.guest's rules: Role/Enumerate -> %s", grpcErr(err))
	} else {
		check(status.Code(err).String() == "PermissionDenied",
			"no token, guest access disabled: Node/EnumerateWithFilters -> %s", grpcErr(err))
	}

	expired := c.mustToken("ttl=-1m")
	err = nodes(c.withToken(expired))
	check(status.Code(err).String() == "PermissionDenied", "expired token: Node/EnumerateWithFilters -> %s", grpcErr(err))

	err = nodes(c.withToken("not-a-jwt"))
	check(err != nil, "malformed token: Node/EnumerateWithFilters -> %s", grpcErr(err))

	// Same claims, broken signature.
	parts := strings.Split(valid, ".")
	err = nodes(c.withToken(parts[0] + "." + parts[1] + ".AAAA"))
	check(status.Code(err).String() == "PermissionDenied", "bad signature: Node/EnumerateWithFilters -> %s", grpcErr(err))

	// Only the harness's issuer has an authenticator.
	err = nodes(c.withToken(c.mustToken("ttl=60s&iss=someone-else")))
	check(status.Code(err).String() == "Unauthenticated", "untrusted issuer: Node/EnumerateWithFilters -> %s", grpcErr(err))

	view := c.mustToken("ttl=60s&role=system.view")
	err = nodes(c.withToken(view))
	check(err == nil, "system.view token: Node/EnumerateWithFilters -> %s", grpcErr(err))
	ctx, cancel := c.withToken(view).ctx()
	_, err = api.NewOpenStorageVolumeClient(c.conn).Create(ctx, &api.SdkVolumeCreateRequest{
		Name: "view-cannot-create", Spec: &api.VolumeSpec{Size: 1 << 30, HaLevel: 1}})
	cancel()
	check(status.Code(err).String() == "PermissionDenied", "system.view token: Volume/Create -> %s", grpcErr(err))
}
