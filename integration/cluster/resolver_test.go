package main

import "testing"

func TestServiceResolverFromEnv(t *testing.T) {
	t.Setenv("STORK_WEBHOOK_SERVICE_MAP", "stork-service.kube-system:443=127.0.0.1:8443, other.ns-*=127.0.0.1:9000")
	t.Setenv("STORK_WEBHOOK_SERVICE_ADDR", "127.0.0.1:7000")
	r, err := serviceResolverFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ns, name string
		port     int32
		want     string
	}{
		{"kube-system", "stork-service", 443, "https://127.0.0.1:8443"},
		{"kube-system", "stork-service", 444, "https://127.0.0.1:7000"},
		{"ns-1", "other", 80, "https://127.0.0.1:9000"},
		{"x", "y", 1, "https://127.0.0.1:7000"},
	} {
		u, err := r.ResolveEndpoint(c.ns, c.name, c.port)
		if err != nil || u.String() != c.want {
			t.Errorf("%s/%s:%d = %v, %v; want %s", c.ns, c.name, c.port, u, err, c.want)
		}
	}
}

func TestServiceResolverUnmapped(t *testing.T) {
	t.Setenv("STORK_WEBHOOK_SERVICE_MAP", "a.b=127.0.0.1:1")
	t.Setenv("STORK_WEBHOOK_SERVICE_ADDR", "")
	r, err := serviceResolverFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ResolveEndpoint("b", "c", 443); err == nil {
		t.Error("unmapped service resolved")
	}
}

func TestServiceResolverBadEnv(t *testing.T) {
	for _, m := range []string{"noequals", "a.b=nohostport", "nonamespace=127.0.0.1:1", "a.b:x=127.0.0.1:1"} {
		t.Setenv("STORK_WEBHOOK_SERVICE_MAP", m)
		if _, err := serviceResolverFromEnv(); err == nil {
			t.Errorf("%q: no error", m)
		}
	}
	t.Setenv("STORK_WEBHOOK_SERVICE_MAP", "")
	if r, err := serviceResolverFromEnv(); r != nil || err != nil {
		t.Errorf("empty env: got %v, %v; want nil, nil (upstream resolver)", r, err)
	}
}
