package mesh

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

// DefaultNetworkName is the name KubeVirt itself gives the pod network.
const DefaultNetworkName = "default"

// AppName picks the app label a VMI gets when its owner gave none:
// app.kubernetes.io/name, else the owning VirtualMachine, else the owning
// replica set or pool, else the VMI's own name (or generateName). from says
// where the name came from, in words.
func AppName(name, generateName string, labels map[string]string, owners []metav1.OwnerReference) (app, from string) {
	if v := labels[AppNameLabel]; v != "" {
		return v, AppNameLabel
	}
	if o := ownerOfKind(owners, "VirtualMachine"); o != "" {
		return o, "VirtualMachine " + quote(o)
	}
	if v := labels[KubeVirtVMNameLabel]; v != "" {
		return v, "VirtualMachine " + quote(v)
	}
	if o := ownerOfKind(owners, "VirtualMachineInstanceReplicaSet"); o != "" {
		return o, "VirtualMachineInstanceReplicaSet " + quote(o)
	}
	if o := ownerOfKind(owners, "VirtualMachinePool"); o != "" {
		return o, "VirtualMachinePool " + quote(o)
	}
	if name != "" {
		return name, "the VMI's name"
	}
	if g := strings.TrimSuffix(generateName, "-"); g != "" {
		return g, "the VMI's generateName"
	}
	return "", ""
}

// VMIApp is the app of a VMI as the webhook leaves it: its app label, or the
// one the webhook would give it.
func VMIApp(meta *metav1.ObjectMeta) string {
	if v, ok := meta.Labels[AppLabel]; ok {
		return v
	}
	app, _ := AppName(meta.Name, meta.GenerateName, meta.Labels, meta.OwnerReferences)
	return app
}

// VMApp is the app the VMIs of a VirtualMachine get: the template's app
// label, or what the webhook gives a VMI that VM owns.
func VMApp(vm *kubevirtv1.VirtualMachine) string {
	var labels map[string]string
	if vm.Spec.Template != nil {
		labels = vm.Spec.Template.ObjectMeta.Labels
	}
	if v, ok := labels[AppLabel]; ok {
		return v
	}
	if v := labels[AppNameLabel]; v != "" {
		return v
	}
	return vm.Name
}

// OwnedByVM reports whether a VMI belongs to a VirtualMachine.
func OwnedByVM(meta *metav1.ObjectMeta) bool {
	return ownerOfKind(meta.OwnerReferences, "VirtualMachine") != ""
}

// PodInterface returns the interface bound to the pod network, if any.
func PodInterface(spec *kubevirtv1.VirtualMachineInstanceSpec) *kubevirtv1.Interface {
	for _, n := range spec.Networks {
		if n.Pod == nil {
			continue
		}
		for i := range spec.Domain.Devices.Interfaces {
			if spec.Domain.Devices.Interfaces[i].Name == n.Name {
				return &spec.Domain.Devices.Interfaces[i]
			}
		}
	}
	return nil
}

// HasPodNetwork reports whether a VMI spec is on the pod network, counting the
// pod network KubeVirt attaches when a spec names no network at all.
func HasPodNetwork(spec *kubevirtv1.VirtualMachineInstanceSpec) bool {
	if len(spec.Networks) == 0 && len(spec.Domain.Devices.Interfaces) == 0 {
		a := spec.Domain.Devices.AutoattachPodInterface
		return a == nil || *a
	}
	return PodInterface(spec) != nil
}

func ownerOfKind(refs []metav1.OwnerReference, kind string) string {
	for _, r := range refs {
		if r.Kind == kind && strings.HasSuffix(strings.SplitN(r.APIVersion, "/", 2)[0], "kubevirt.io") {
			return r.Name
		}
	}
	return ""
}

func quote(s string) string { return "\"" + s + "\"" }
