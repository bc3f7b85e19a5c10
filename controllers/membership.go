package controllers

import (
	"context"
	"errors"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// namespaceInfo is what the controllers need of a namespace.
type namespaceInfo struct {
	name        string
	labels      map[string]string
	exists      bool
	terminating bool
}

func getNamespace(ctx context.Context, c client.Reader, name string) (namespaceInfo, error) {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := c.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return namespaceInfo{name: name}, nil
		}
		return namespaceInfo{}, err
	}
	return namespaceInfo{name: name, labels: ns.Labels, exists: true, terminating: ns.DeletionTimestamp != nil}, nil
}

// workload is a VirtualMachine or a VirtualMachineInstance as membership sees
// it: the labels, annotations and spec its VMIs carry (a VM's template).
type workload struct {
	kind string // "VirtualMachine" or "VirtualMachineInstance"
	meta *metav1.ObjectMeta
	// vmiMeta and spec are the VMI's own, or the VM's template (nil for a
	// VM without one).
	vmiMeta *metav1.ObjectMeta
	spec    *kubevirtv1.VirtualMachineInstanceSpec
	vm      *kubevirtv1.VirtualMachine
	vmi     *kubevirtv1.VirtualMachineInstance // nil for a VM
}

func vmWorkload(vm *kubevirtv1.VirtualMachine) workload {
	w := workload{kind: "VirtualMachine", meta: &vm.ObjectMeta, vm: vm}
	if t := vm.Spec.Template; t != nil {
		w.vmiMeta, w.spec = &t.ObjectMeta, &t.Spec
	}
	return w
}

func vmiWorkload(vmi *kubevirtv1.VirtualMachineInstance) workload {
	return workload{kind: "VirtualMachineInstance", meta: &vmi.ObjectMeta, vmiMeta: &vmi.ObjectMeta, spec: &vmi.Spec, vmi: vmi}
}

// meshed: the workload's VMIs are (or will be) in the mesh, on the pod
// network with a binding Istio works with (the webhook's own rule).
func (w workload) meshed(ns namespaceInfo, cfg mesh.Config) bool {
	if w.spec == nil {
		return false
	}
	return mesh.Decide(ns.name, ns.labels, w.vmiMeta.Labels, w.vmiMeta.Annotations, cfg).InMesh && mesh.Meshable(w.spec)
}

// deleting: the workload is going away; it no longer needs a NAD or a Service.
func (w workload) deleting() bool { return w.meta.DeletionTimestamp != nil }

// shortKind is what users call it: VirtualMachine or VMI.
func (w workload) shortKind() string {
	if w.vm != nil {
		return "VirtualMachine"
	}
	return "VMI"
}

// standalone: a VM, or a VMI no VM owns (a VM stands for its VMIs).
func (w workload) standalone() bool {
	return w.vm != nil || !mesh.OwnedByVM(w.meta)
}

// app is the app label its VMIs carry, as the webhook sets it.
func (w workload) app() string {
	if w.vm != nil {
		return mesh.VMApp(w.vm)
	}
	return mesh.VMIApp(w.meta)
}

// annotations are those virtmesh reads for Services: a VM's template
// annotations with the VM's own over them (an owner may use either).
func (w workload) annotations() map[string]string {
	if w.vm == nil {
		return w.meta.Annotations
	}
	out := map[string]string{}
	if w.vmiMeta != nil {
		maps.Copy(out, w.vmiMeta.Annotations)
	}
	maps.Copy(out, w.meta.Annotations)
	return out
}

// jsonNetworks: KubeVirt writes the pod's Multus networks annotation in JSON
// form for it (secondary networks, or the passt binding plugin).
func (w workload) jsonNetworks() bool {
	return w.spec != nil && mesh.JSONNetworks(w.spec)
}

// ports are those declared on its pod-network interface.
func (w workload) ports() []kubevirtv1.Port {
	if w.spec == nil {
		return nil
	}
	if iface := mesh.PodInterface(w.spec); iface != nil {
		return iface.Ports
	}
	return nil
}

// workloadOf is a VM or VMI as a workload.
func workloadOf(o runtime.Object) (workload, bool) {
	switch o := o.(type) {
	case *kubevirtv1.VirtualMachine:
		return vmWorkload(o), true
	case *kubevirtv1.VirtualMachineInstance:
		return vmiWorkload(o), true
	}
	return workload{}, false
}

// errStop ends an eachWorkload loop early.
var errStop = errors.New("stop")

// eachWorkload lists the VMs, then the VMIs, matching opts from c (the
// trimmed cache) and calls fn on each until it returns false. It is the one
// loop over both kinds: Services, NADs, watches and metrics all use it.
func eachWorkload(ctx context.Context, c client.Reader, fn func(workload) bool, opts ...client.ListOption) error {
	opts = append(opts, client.UnsafeDisableDeepCopy)
	for _, list := range []client.ObjectList{&kubevirtv1.VirtualMachineList{}, &kubevirtv1.VirtualMachineInstanceList{}} {
		if err := c.List(ctx, list, opts...); err != nil {
			return err
		}
		err := meta.EachListItem(list, func(o runtime.Object) error {
			if w, ok := workloadOf(o); ok && !fn(w) {
				return errStop
			}
			return nil
		})
		if errors.Is(err, errStop) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}
