// Command virtmesh is the single manager binary: it serves the VMI mutating
// webhook and runs the controllers that keep meshed VMs reachable.
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"runtime/debug"

	"k8s.io/apimachinery/pkg/api/resource"
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

// memoryLimitEnv carries the container's memory limit (the Deployment sets
// it from limits.memory). Unless GOMEMLIMIT is set, the Go runtime's soft
// memory limit becomes memoryLimitShare of it: the runtime's limit covers
// the heap, stacks and its own metadata, not the binary's code in memory
// (about 36 MiB resident) nor the page cache the container is charged for,
// so the collector works harder before the kernel's OOM killer acts.
const (
	memoryLimitEnv   = "VIRTMESH_MEMORY_LIMIT"
	memoryLimitShare = 0.8
)

// softMemoryLimit is the runtime's memory limit for a container limit
// (bytes, as resourceFieldRef gives it, or a quantity such as 256Mi); 0:
// none given.
func softMemoryLimit(container string) (int64, error) {
	if container == "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(container)
	if err != nil || q.Cmp(minMemoryLimit) < 0 {
		return 0, fmt.Errorf("%s=%q: want the container's memory limit in bytes (as resourceFieldRef gives it, with no divisor) "+
			"or as a quantity such as 256Mi, at least %s", memoryLimitEnv, container, minMemoryLimit.String())
	}
	return int64(float64(q.Value()) * memoryLimitShare), nil
}

// minMemoryLimit is the smallest container limit virtmesh accepts: below
// it the value is a mistake (a divisor on the resourceFieldRef, say), and
// the collector would run without pause.
var minMemoryLimit = resource.MustParse("32Mi")

func main() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGOGC)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		limit, err := softMemoryLimit(os.Getenv(memoryLimitEnv))
		if err != nil {
			fmt.Fprintln(os.Stderr, "virtmesh:", err)
			os.Exit(2)
		}
		if limit > 0 {
			debug.SetMemoryLimit(limit)
		}
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
	if limit := debug.SetMemoryLimit(-1); limit != math.MaxInt64 {
		log.Info("Go memory limit", "MiB", limit>>20)
	}

	// Every invalid flag at once, before anything else can fail.
	if err := opts.Validate(); err != nil {
		log.Error(err, "invalid flags")
		os.Exit(2)
	}
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
