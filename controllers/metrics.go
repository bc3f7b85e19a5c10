package controllers

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	toolscache "k8s.io/client-go/tools/cache"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

var (
	meshedVMIsDesc = prometheus.NewDesc("virtmesh_meshed_vmis",
		"VirtualMachineInstances the mesh rules put in the Istio mesh (on the pod network, not opted out).", nil, nil)
	meshedVMsDesc = prometheus.NewDesc("virtmesh_meshed_virtualmachines",
		"VirtualMachines whose VMIs the mesh rules put in the Istio mesh.", nil, nil)
	missingNADDesc = prometheus.NewDesc("virtmesh_namespaces_missing_nad",
		"Mesh namespaces whose meshed VMs cannot start for want of a NetworkAttachmentDefinition virtmesh does not create "+
			"(a missing shared istio-cni NAD, or an OpenShift Service Mesh 2 namespace that is not a member); see the Events on the namespace.", nil, nil)
	foreignNADDesc = prometheus.NewDesc("virtmesh_namespaces_foreign_nad",
		"Mesh namespaces holding, under the name of the per-namespace istio-cni NAD virtmesh would create there, a "+
			"NetworkAttachmentDefinition virtmesh did not create that lets meshed VMs' traffic bypass their proxy (another CNI "+
			"plugin, or istio-cni excluding the namespace); see the NetworkAttachmentDefinitionNotIstioCNI Warning on the NAD, "+
			"virtmesh's log, and virtmesh_foreign_nads_found_total.", nil, nil)
	vmisDesc = prometheus.NewDesc("virtmesh_vmis",
		"VirtualMachineInstances by mesh state, read from their launcher pods (Meshed, Starting, Pending, NotInMesh, NotMeshable, "+
			"NeedsRestart, NoProxy, Broken, Pinned, Onboarding, Stopped); kubectl virtmesh status lists them.", []string{"state"}, nil)
)

// meshCollector counts meshed VMs and VMIs from the cache at scrape time:
// always right, no per-VM series. Only the leader reports (its cache is the
// one that holds VMs); other replicas report nothing rather than a wrong 0.
type meshCollector struct {
	reader client.Reader
	// cache, when set, is walked in place (no list copied per scrape).
	cache   cache.Cache
	mesh    mesh.Config
	elected <-chan struct{}
	// missingNAD counts namespaces missing a NAD (nil: NADs are not managed).
	missingNAD func() float64
	// foreignNAD counts namespaces with a foreign NAD of the istio-cni
	// name running another plugin (nil: NADs are not managed).
	foreignNAD func() float64
	// states counts VMIs per mesh state.
	states func() map[mesh.State]int
}

func (c *meshCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- meshedVMIsDesc
	ch <- meshedVMsDesc
	ch <- missingNADDesc
	ch <- foreignNADDesc
	ch <- vmisDesc
}

func (c *meshCollector) Collect(ch chan<- prometheus.Metric) {
	select {
	case <-c.elected:
	default:
		return
	}
	if c.missingNAD != nil {
		ch <- prometheus.MustNewConstMetric(missingNADDesc, prometheus.GaugeValue, c.missingNAD())
	}
	if c.foreignNAD != nil {
		ch <- prometheus.MustNewConstMetric(foreignNADDesc, prometheus.GaugeValue, c.foreignNAD())
	}
	if c.states != nil {
		counts := c.states()
		for _, s := range mesh.States {
			ch <- prometheus.MustNewConstMetric(vmisDesc, prometheus.GaugeValue, float64(counts[s]), string(s))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	namespaces := map[string]namespaceInfo{}
	counts := map[string]int{}
	err := eachCachedWorkload(ctx, c.cache, c.reader, func(w workload) bool {
		ns, ok := namespaces[w.meta.Namespace]
		if !ok {
			var err error
			if ns, err = getNamespace(ctx, c.reader, w.meta.Namespace); err != nil {
				return true // not counted; the next scrape tries again
			}
			namespaces[w.meta.Namespace] = ns
		}
		if w.meshed(ns, c.mesh) {
			counts[w.kind]++
		}
		return true
	})
	if err != nil {
		return // no figure rather than a wrong one
	}
	ch <- prometheus.MustNewConstMetric(meshedVMIsDesc, prometheus.GaugeValue, float64(counts["VirtualMachineInstance"]))
	ch <- prometheus.MustNewConstMetric(meshedVMsDesc, prometheus.GaugeValue, float64(counts["VirtualMachine"]))
}

// eachCachedWorkload calls fn on every cached VM and VMI, walking the
// informers' stores in place: listing them through the client would copy
// every object into a new list at every scrape (tens of MB at 20,000 VMIs).
// It reads through reader when the cache is not walkable (nil, a fake).
func eachCachedWorkload(ctx context.Context, c cache.Cache, reader client.Reader, fn func(workload) bool) error {
	if c == nil {
		return eachWorkload(ctx, reader, fn)
	}
	var stores []toolscache.Store
	var packed *packingInformer
	for _, obj := range []client.Object{&kubevirtv1.VirtualMachine{}, &kubevirtv1.VirtualMachineInstance{}} {
		inf, err := c.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
		if err != nil {
			return err
		}
		s, ok := inf.(interface{ GetStore() toolscache.Store })
		if !ok {
			return eachWorkload(ctx, reader, fn)
		}
		if !inf.HasSynced() {
			return errors.New("the cache has not synced yet")
		}
		if p, ok := inf.(*packingInformer); ok {
			packed = p // walked below without unpacking each VMI anew
			continue
		}
		stores = append(stores, s.GetStore())
	}
	for _, s := range stores {
		for _, o := range s.List() {
			obj, ok := o.(client.Object)
			if !ok {
				continue
			}
			if w, ok := workloadOf(obj); ok && !fn(w) {
				return nil
			}
		}
	}
	if packed != nil {
		packed.eachVMI(func(vmi *kubevirtv1.VirtualMachineInstance) bool { return fn(vmiWorkload(vmi)) })
	}
	return nil
}

// registerCollector registers c in controller-runtime's registry, replacing
// the collector of an earlier manager in the same process (tests, restarts).
func registerCollector(c prometheus.Collector) error {
	err := metrics.Registry.Register(c)
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		metrics.Registry.Unregister(already.ExistingCollector)
		return metrics.Registry.Register(c)
	}
	return err
}
