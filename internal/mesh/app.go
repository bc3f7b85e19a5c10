package mesh

import (
	"fmt"
	"hash/fnv"
	"strings"
	"unicode"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

// DefaultNetworkName is the name KubeVirt itself gives the pod network.
const DefaultNetworkName = "default"

// AppName picks the app label a VMI gets when its owner gave none:
// app.kubernetes.io/name, else the pool that owns its VirtualMachine
// (vmOwners are the owner references of the VirtualMachine that owns the VMI,
// if known), else the owning VirtualMachine, else the owning replica set,
// else the VMI's own name (or generateName). from says where the name came
// from, in words.
func AppName(name, generateName string, labels map[string]string, owners, vmOwners []metav1.OwnerReference) (app, from string) {
	app, from = appSource(name, generateName, labels, owners, vmOwners)
	switch short := ShortLabelValue(app); {
	case short == "":
		return "", ""
	case short != app && len(app) > maxLabelValue:
		return short, from + ", shortened to a valid label value with a hash suffix"
	case short != app:
		return short, from + ", made a valid label value"
	}
	return app, from
}

func appSource(name, generateName string, labels map[string]string, owners, vmOwners []metav1.OwnerReference) (app, from string) {
	if v := labels[AppNameLabel]; v != "" {
		return v, AppNameLabel
	}
	if o := ownerOfKind(owners, "VirtualMachine"); o != "" {
		if pool := ownerOfKind(vmOwners, "VirtualMachinePool"); pool != "" {
			return pool, "VirtualMachinePool " + quote(pool) + " of VirtualMachine " + quote(o)
		}
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
	if g := strings.TrimRight(generateName, "-._"); g != "" {
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
	app, _ := AppName(meta.Name, meta.GenerateName, meta.Labels, meta.OwnerReferences, nil)
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
	if pool := ownerOfKind(vm.OwnerReferences, "VirtualMachinePool"); pool != "" {
		return ShortLabelValue(pool)
	}
	return ShortLabelValue(vm.Name)
}

// maxLabelValue is the longest label value Kubernetes accepts.
const maxLabelValue = validation.LabelValueMaxLength

// ShortLabelValue makes an object name a valid label value: names longer
// than 63 characters (KubeVirt allows VM names up to 253) are cut to 52 and
// given a dash and a 10-character hash of the whole name (40 bits: no
// collision in practice, unlike the 5 characters Kubernetes uses for names it
// generates at random), and a value never ends in '-', '.' or '_'. The result
// is stable, so the webhook and the controllers derive the same app (and
// Service name) from the same VM.
func ShortLabelValue(v string) string {
	// Owner reference names are not validated by the API server: whatever
	// they hold, the result is a label value (or empty: no app label).
	v = strings.Map(func(r rune) rune {
		if r < 128 && (r == '-' || r == '_' || r == '.' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return r
		}
		return '-'
	}, v)
	v = strings.Trim(v, "-._")
	if len(v) <= maxLabelValue {
		return v
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(v))
	prefix := strings.TrimRight(v[:maxLabelValue-11], "-._")
	return fmt.Sprintf("%s-%010x", prefix, h.Sum64()&0xffffffffff)
}

// OwnedByVM reports whether a VMI belongs to a VirtualMachine.
func OwnedByVM(meta *metav1.ObjectMeta) bool {
	return ownerOfKind(meta.OwnerReferences, "VirtualMachine") != ""
}

// istioReservedPorts are the ports Istio's proxy takes in the launcher pod
// (KubeVirt pkg/network/istio/ports.go); a VM cannot serve on them in the mesh.
var istioReservedPorts = map[int32]bool{
	15000: true, 15001: true, 15004: true, 15006: true, 15008: true,
	15009: true, 15020: true, 15021: true, 15053: true, 15090: true,
}

// IstioReservedPort reports whether Istio's proxy takes port p.
func IstioReservedPort(p int32) bool { return istioReservedPorts[p] }

// SSHPort is never proxied by KubeVirt with Istio: no mTLS or policy applies to it.
const SSHPort = 22

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

// PodBindingSupported reports whether Istio works with the pod interface's
// binding as virtmesh leaves it: masquerade, passt (core or plugin), or none
// or bridge, which the webhook switches to masquerade.
func PodBindingSupported(iface *kubevirtv1.Interface) bool {
	b := iface.InterfaceBindingMethod
	switch {
	case b.Masquerade != nil, b.PasstBinding != nil, iface.Binding != nil && iface.Binding.Name == "passt":
		return true
	case iface.Binding != nil:
		return false
	}
	return b.Bridge != nil || b == (kubevirtv1.InterfaceBindingMethod{})
}

// Meshable reports whether a VMI spec can join the mesh: on the pod network,
// with a binding Istio works with (see PodBindingSupported).
func Meshable(spec *kubevirtv1.VirtualMachineInstanceSpec) bool {
	if !HasPodNetwork(spec) {
		return false
	}
	iface := PodInterface(spec)
	return iface == nil || PodBindingSupported(iface) // nil: KubeVirt adds the default interface
}

// JSONNetworks reports whether KubeVirt writes the launcher pod's Multus
// networks annotation in JSON form for this spec: secondary (Multus)
// networks, or the passt binding plugin.
func JSONNetworks(spec *kubevirtv1.VirtualMachineInstanceSpec) bool {
	for _, n := range spec.Networks {
		if n.Multus != nil {
			return true
		}
	}
	iface := PodInterface(spec)
	return iface != nil && iface.Binding != nil && iface.Binding.Name == "passt"
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
