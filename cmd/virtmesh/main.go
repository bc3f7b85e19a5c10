// Command virtmesh is the single manager binary: it serves the VMI mutating
// webhook and runs the controllers that keep meshed VMs reachable.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime/debug"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/virtmesh/virtmesh/internal/app"
	"github.com/virtmesh/virtmesh/internal/version"
)

// defaultGOGC is the garbage collector's target when GOGC is not set: the
// manager's heap is mostly its informer caches, which live long, so a
// tighter target costs little CPU and keeps the resident memory near the
// cache's size (docs/benchmarks.md measures it). Set GOGC to override.
const defaultGOGC = 50

// watchListEnv turns on client-go's streaming lists (WatchListClient): the
// informers' first lists arrive from the API server one object at a time
// (Kubernetes 1.32+ serves them; older servers get a plain list), so the
// manager never decodes all VMIs or pods at once before trimming them.
const watchListEnv = "KUBE_FEATURE_WatchListClient"

func main() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGOGC)
	}
	if _, set := os.LookupEnv(watchListEnv); !set {
		_ = os.Setenv(watchListEnv, "true") // read by client-go on first use, below
	}
	opts := app.NewOptions()
	opts.AddFlags(flag.CommandLine)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()

	if opts.ShowVersion {
		fmt.Println(version.String())
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")

	cfg, err := ctrl.GetConfig()
	if err != nil {
		log.Error(err, "loading kubeconfig")
		os.Exit(1)
	}
	if err := app.Run(ctrl.SetupSignalHandler(), cfg, opts); err != nil {
		log.Error(err, "virtmesh stopped with an error")
		os.Exit(1)
	}
}
