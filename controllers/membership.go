package controllers

import (
	"context"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// vmiMeshed: the VMI is in the mesh and on the pod network.
func vmiMeshed(ns namespaceInfo, vmi *kubevirtv1.VirtualMachineInstance, cfg mesh.Config) bool {
	return mesh.Decide(ns.name, ns.labels, vmi.Labels, vmi.Annotations, cfg).InMesh && mesh.HasPodNetwork(&vmi.Spec)
}

// vmMeshed: the VM's VMIs will be in the mesh and on the pod network.
func vmMeshed(ns namespaceInfo, vm *kubevirtv1.VirtualMachine, cfg mesh.Config) bool {
	t := vm.Spec.Template
	if t == nil {
		return false
	}
	return mesh.Decide(ns.name, ns.labels, t.ObjectMeta.Labels, t.ObjectMeta.Annotations, cfg).InMesh && mesh.HasPodNetwork(&t.Spec)
}

// vmAnnotations are a VM's template annotations with the VM's own over them:
// an owner may put virtmesh's annotations on either.
func vmAnnotations(vm *kubevirtv1.VirtualMachine) map[string]string {
	out := map[string]string{}
	if vm.Spec.Template != nil {
		maps.Copy(out, vm.Spec.Template.ObjectMeta.Annotations)
	}
	maps.Copy(out, vm.Annotations)
	return out
}

func podPorts(spec *kubevirtv1.VirtualMachineInstanceSpec) []kubevirtv1.Port {
	if iface := mesh.PodInterface(spec); iface != nil {
		return iface.Ports
	}
	return nil
}
