package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/libopenstorage/openstorage/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

func mustCAPool(path string) *x509.CertPool {
	pem, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "--ca:", err)
		os.Exit(2)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fmt.Fprintln(os.Stderr, "--ca: no PEM certificate in", path)
		os.Exit(2)
	}
	return pool
}

func printFreePort() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "free port:", err)
		os.Exit(1)
	}
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	l.Close()
}

// version calls OpenStorageIdentity/Version on a fresh connection made with opt. The dial
// does not block, so a failing handshake shows up as the call's error.
func version(addr string, opt grpc.DialOption) error {
	conn, err := grpc.Dial(addr, opt)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = api.NewOpenStorageIdentityClient(conn).Version(ctx, &api.SdkIdentityVersionRequest{})
	return err
}

// tlsChecks: what a client sees of the SDK port (and the REST gateway) with --tls-cert.
func tlsChecks(addr, caFile, gateway string) {
	step("tls")
	pool := mustCAPool(caFile)
	tlsCreds := func(name string, roots *x509.CertPool) grpc.DialOption {
		return grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(roots, name))
	}

	err := version(addr, tlsCreds("", pool))
	check(err == nil, "TLS trusting the CA, name 127.0.0.1 (IP SAN): Identity/Version -> %s", grpcErr(err))
	err = version(addr, tlsCreds("localhost", pool))
	check(err == nil, "TLS trusting the CA, name localhost (DNS SAN): Identity/Version -> %s", grpcErr(err))

	err = version(addr, grpc.WithInsecure())
	check(status.Code(err).String() == "Unavailable", "plaintext gRPC to the TLS port: Identity/Version -> %s", grpcErr(err))
	err = version(addr, tlsCreds("", x509.NewCertPool()))
	check(err != nil && strings.Contains(err.Error(), "x509"),
		"TLS not trusting the CA: Identity/Version -> %s", grpcErr(err))
	err = version(addr, tlsCreds("other.invalid", pool))
	check(err != nil && strings.Contains(err.Error(), "x509"),
		"TLS trusting the CA, name other.invalid: Identity/Version -> %s", grpcErr(err))

	// ALPN, as a rustls client (tonic) offers it: tonic insists on "h2" being negotiated.
	alpn := func(protos ...string) (tls.ConnectionState, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
			&tls.Config{RootCAs: pool, NextProtos: protos})
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer conn.Close()
		return conn.ConnectionState(), nil
	}
	st, err := alpn("h2")
	check(err == nil && st.NegotiatedProtocol == "h2", "ALPN offer [h2] -> negotiated %q, %s, %s (err %v)",
		st.NegotiatedProtocol, tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), err)
	st, err = alpn()
	info("no ALPN offered -> handshake err=%v, negotiated %q", err, st.NegotiatedProtocol)
	st, err = alpn("http/1.1")
	info("ALPN offer [http/1.1] -> handshake err=%v, negotiated %q", err, st.NegotiatedProtocol)

	if gateway == "" {
		return
	}
	// The gateway serves HTTPS with the same key pair; behind it, it still dials the SDK's
	// plaintext unix socket.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(cl *http.Client, url string) (int, string, error) {
		resp, err := cl.Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b)), nil
	}
	code, body, err := get(hc, "https://"+gateway+"/v1/identities/version")
	check(err == nil && code == 200 && strings.Contains(body, "sdk_version"),
		"REST gateway over HTTPS: GET /v1/identities/version -> %d %.80s (err %v)", code, body, err)
	code, body, err = get(hc, "https://"+gateway+"/v1/nodes")
	check(err == nil && code == 200 && strings.Contains(body, "px-n1"),
		"REST gateway over HTTPS: GET /v1/nodes -> %d %s (err %v)", code, body, err)
	code, body, err = get(&http.Client{Timeout: 10 * time.Second}, "http://"+gateway+"/v1/identities/version")
	check(err != nil || code == 400, "REST gateway over plain HTTP -> %d %q (err %v)", code, body, err)
}
