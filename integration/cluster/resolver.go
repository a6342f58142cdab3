package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"k8s.io/apiserver/pkg/util/webhook"
)

// Without kube-proxy the apiserver cannot reach a Service's clusterIP, so webhook
// (and APIService) `service:` references are resolved from the environment to a
// loopback address instead:
//
//	STORK_WEBHOOK_SERVICE_ADDR=127.0.0.1:8443
//	    every service reference dials 127.0.0.1:8443
//	STORK_WEBHOOK_SERVICE_MAP=stork-service.kube-system:443=127.0.0.1:8443,*.test-*=127.0.0.1:9443
//	    per service; key is name.namespace[:port], "*" matches any name/namespace/port,
//	    and a trailing "*" in the name or namespace matches a prefix. First match wins;
//	    STORK_WEBHOOK_SERVICE_ADDR (if also set) is the fallback.
//
// Only the TCP destination changes: the apiserver still sends SNI and verifies the
// serving certificate against <name>.<namespace>.svc, exactly as in a real cluster.
// Services that match nothing fail with an error (the webhook's failurePolicy applies).

type serviceRule struct {
	name, namespace string
	port            int32 // 0 = any
	addr            string
}

type envServiceResolver struct {
	rules []serviceRule
}

func serviceResolverFromEnv() (webhook.ServiceResolver, error) {
	var rules []serviceRule
	if m := strings.TrimSpace(os.Getenv("STORK_WEBHOOK_SERVICE_MAP")); m != "" {
		for _, entry := range strings.Split(m, ",") {
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			key, addr, ok := strings.Cut(entry, "=")
			if !ok {
				return nil, fmt.Errorf("STORK_WEBHOOK_SERVICE_MAP: entry %q is not key=host:port", entry)
			}
			r := serviceRule{addr: strings.TrimSpace(addr)}
			if _, _, err := net.SplitHostPort(r.addr); err != nil {
				return nil, fmt.Errorf("STORK_WEBHOOK_SERVICE_MAP: entry %q: %v", entry, err)
			}
			key = strings.TrimSpace(key)
			if key == "*" {
				key = "*.*"
			}
			if svc, port, ok := strings.Cut(key, ":"); ok {
				key = svc
				if port != "*" {
					p, err := strconv.ParseInt(port, 10, 32)
					if err != nil {
						return nil, fmt.Errorf("STORK_WEBHOOK_SERVICE_MAP: entry %q: bad port: %v", entry, err)
					}
					r.port = int32(p)
				}
			}
			var found bool
			r.name, r.namespace, found = strings.Cut(key, ".")
			if !found || r.name == "" || r.namespace == "" {
				return nil, fmt.Errorf("STORK_WEBHOOK_SERVICE_MAP: entry %q: key must be name.namespace[:port]", entry)
			}
			rules = append(rules, r)
		}
	}
	if a := strings.TrimSpace(os.Getenv("STORK_WEBHOOK_SERVICE_ADDR")); a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("STORK_WEBHOOK_SERVICE_ADDR=%q: %v", a, err)
		}
		rules = append(rules, serviceRule{name: "*", namespace: "*", addr: a})
	}
	if len(rules) == 0 {
		return nil, nil
	}
	return &envServiceResolver{rules: rules}, nil
}

func match(pattern, value string) bool {
	if strings.HasSuffix(pattern, "*") {
		return strings.HasPrefix(value, strings.TrimSuffix(pattern, "*"))
	}
	return pattern == value
}

func (r *envServiceResolver) ResolveEndpoint(namespace, name string, port int32) (*url.URL, error) {
	for _, rule := range r.rules {
		if match(rule.name, name) && match(rule.namespace, namespace) && (rule.port == 0 || rule.port == port) {
			return &url.URL{Scheme: "https", Host: rule.addr}, nil
		}
	}
	return nil, fmt.Errorf("service %s/%s:%d is not mapped by STORK_WEBHOOK_SERVICE_MAP/STORK_WEBHOOK_SERVICE_ADDR", namespace, name, port)
}
