package controllers

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	meshedVMIsDesc = prometheus.NewDesc("virtmesh_meshed_vmis",
		"VirtualMachineInstances the mesh rules put in the Istio mesh (on the pod network, not opted out).", nil, nil)
	meshedVMsDesc = prometheus.NewDesc("virtmesh_meshed_virtualmachines",
		"VirtualMachines whose VMIs the mesh rules put in the Istio mesh.", nil, nil)
)

// meshCollector counts meshed VMs and VMIs from the cache at scrape time:
// always right, no per-VM series. Only the leader reports (its cache is the
// one that holds VMs); other replicas report nothing rather than a wrong 0.
type meshCollector struct {
	reader  client.Reader
	cfg     Config
	elected <-chan struct{}
}

func (c *meshCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- meshedVMIsDesc
	ch <- meshedVMsDesc
}

func (c *meshCollector) Collect(ch chan<- prometheus.Metric) {
	select {
	case <-c.elected:
	default:
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	namespaces := map[string]namespaceInfo{}
	nsOf := func(name string) (namespaceInfo, bool) {
		if ns, ok := namespaces[name]; ok {
			return ns, true
		}
		ns, err := getNamespace(ctx, c.reader, name)
		if err != nil {
			return ns, false
		}
		namespaces[name] = ns
		return ns, true
	}
	vmis := &kubevirtv1.VirtualMachineInstanceList{}
	if err := c.reader.List(ctx, vmis, client.UnsafeDisableDeepCopy); err == nil {
		n := 0
		for i := range vmis.Items {
			if ns, ok := nsOf(vmis.Items[i].Namespace); ok && vmiMeshed(ns, &vmis.Items[i], c.cfg.Mesh) {
				n++
			}
		}
		ch <- prometheus.MustNewConstMetric(meshedVMIsDesc, prometheus.GaugeValue, float64(n))
	}
	vms := &kubevirtv1.VirtualMachineList{}
	if err := c.reader.List(ctx, vms, client.UnsafeDisableDeepCopy); err == nil {
		n := 0
		for i := range vms.Items {
			if ns, ok := nsOf(vms.Items[i].Namespace); ok && vmMeshed(ns, &vms.Items[i], c.cfg.Mesh) {
				n++
			}
		}
		ch <- prometheus.MustNewConstMetric(meshedVMsDesc, prometheus.GaugeValue, float64(n))
	}
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
