package main

import (
	"fmt"
	"os"
	"runtime"

	etcdversion "go.etcd.io/etcd/api/v3/version"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/version"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	schedulerapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func runAPIServer() int {
	resolver, err := serviceResolverFromEnv()
	if err != nil {
		fmt.Fprintf(os.Stderr, "k8s-local apiserver: %v\n", err)
		return 2
	}
	if resolver != nil {
		apiserverapp.SetServiceResolverForTests(resolver)
	}
	return cli.Run(apiserverapp.NewAPIServerCommand())
}

func runScheduler() int {
	return cli.Run(schedulerapp.NewSchedulerCommand())
}

func runControllerManager() int {
	return cli.Run(kcmapp.NewControllerManagerCommand())
}

// runEtcd runs the etcd server exactly like the upstream etcd binary
// (go.etcd.io/etcd/server/v3/main.go). etcdmain.Main exits the process itself.
func runEtcd() int {
	etcdmain.Main(os.Args)
	return 0
}

func runVersion() int {
	fmt.Printf("kubernetes %s\netcd %s\ngo %s %s/%s\n",
		version.Get().GitVersion, etcdversion.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}
