// Command k8s-local is a multi-call binary holding the upstream Kubernetes
// control-plane components and etcd, built from the Go module proxy for
// stork's end-to-end tests.
//
//	k8s-local apiserver          [kube-apiserver flags]
//	k8s-local scheduler          [kube-scheduler flags]
//	k8s-local controller-manager [kube-controller-manager flags]
//	k8s-local etcd               [etcd flags]
//	k8s-local version
//
// It also dispatches on the executable name (busybox style) when invoked through
// a symlink called kube-apiserver, kube-scheduler, kube-controller-manager or etcd.
//
// Exactly one component runs per process, and only that component's command is
// constructed: the upstream commands install process-wide signal handlers, feature
// gates and logging configuration that must not be set up twice in one process.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	_ "time/tzdata" // CronJob time zone support, as in the upstream mains

	_ "k8s.io/component-base/logs/json/register"          // JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric
)

const usage = `usage: k8s-local <component> [flags]

components:
  apiserver            kube-apiserver
  scheduler            kube-scheduler
  controller-manager   kube-controller-manager
  etcd                 etcd server
  version              print the versions built into this binary

apiserver extras (webhook/aggregator service resolution without kube-proxy):
  STORK_WEBHOOK_SERVICE_ADDR=host:port
      resolve every service reference to this address
  STORK_WEBHOOK_SERVICE_MAP=name.namespace[:port]=host:port,...
      resolve the listed services; "*" as name, namespace or port matches anything
`

var components = map[string]func() int{
	"apiserver":               runAPIServer,
	"kube-apiserver":          runAPIServer,
	"scheduler":               runScheduler,
	"kube-scheduler":          runScheduler,
	"controller-manager":      runControllerManager,
	"kube-controller-manager": runControllerManager,
	"etcd":                    runEtcd,
	"version":                 runVersion,
}

func main() {
	// Busybox-style: a symlink named after a component.
	if run, ok := components[filepath.Base(os.Args[0])]; ok {
		os.Exit(run())
	}
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	name := os.Args[1]
	run, ok := components[name]
	if !ok {
		if name != "-h" && name != "--help" && name != "help" {
			fmt.Fprintf(os.Stderr, "k8s-local: unknown component %q\n\n", name)
		}
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	// Drop the component name so that cobra (and etcd's own flag parser),
	// which read os.Args[1:], see only the component's flags.
	os.Args = append([]string{os.Args[0]}, os.Args[2:]...)
	os.Exit(run())
}
