package webhook

import (
	"fmt"

	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// ensurePodNetwork makes the pod network's binding one Istio works with. When
// the VMI cannot join the mesh it returns why, in words for the owner,
// leaving the spec untouched (m.denied is set if it must be refused).
func (m *mutator) ensurePodNetwork(policy BridgePolicy) (notMeshable string) {
	spec := &m.vmi.Spec
	if len(spec.Networks) == 0 && len(spec.Domain.Devices.Interfaces) == 0 {
		if a := spec.Domain.Devices.AutoattachPodInterface; a != nil && !*a {
			return "the VMI has no pod network (autoattachPodInterface: false), so it cannot join the Istio mesh; " +
				"Istio only captures traffic on the pod network"
		}
		spec.Networks = []kubevirtv1.Network{{Name: mesh.DefaultNetworkName, NetworkSource: kubevirtv1.NetworkSource{Pod: &kubevirtv1.PodNetwork{}}}}
		spec.Domain.Devices.Interfaces = []kubevirtv1.Interface{{
			Name: mesh.DefaultNetworkName, InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Masquerade: &kubevirtv1.InterfaceMasquerade{}},
		}}
		m.changed(ChangeBinding, "added pod network %q with masquerade binding (Istio needs masquerade; KubeVirt's default is bridge)", mesh.DefaultNetworkName)
		return ""
	}
	iface := mesh.PodInterface(&m.vmi.Spec)
	if iface == nil {
		return "the VMI has no interface on the pod network, so it cannot join the Istio mesh; " +
			"Istio only captures traffic on the pod network"
	}
	if !mesh.PodBindingSupported(iface) {
		return fmt.Sprintf("interface %q on the pod network uses a binding Istio does not support, so the VMI cannot join the Istio mesh; "+
			"use masquerade or passt", iface.Name)
	}
	switch b := &iface.InterfaceBindingMethod; {
	case b.Bridge != nil && policy == BridgeDeny && m.ownerDeclaredBridge(iface.Name):
		m.denied = "virtmesh: interface \"" + iface.Name + "\" on the pod network uses bridge binding, which Istio does not support, " +
			"and virtmesh runs with --bridge-policy=deny: use masquerade: {} instead"
		return m.denied
	case b.Bridge != nil:
		b.Bridge = nil
		b.Masquerade = &kubevirtv1.InterfaceMasquerade{}
		m.changed(ChangeBinding, "interface %q switched from bridge to masquerade (Istio needs masquerade)", iface.Name)
	case iface.Binding == nil && *b == (kubevirtv1.InterfaceBindingMethod{}):
		b.Masquerade = &kubevirtv1.InterfaceMasquerade{}
		m.changed(ChangeBinding, "interface %q set to masquerade binding (Istio needs masquerade; KubeVirt's default is bridge)", iface.Name)
	}
	for _, p := range iface.Ports {
		if mesh.IstioReservedPort(p.Port) {
			m.warn("port %d on interface %q is reserved by Istio's proxy; the VM cannot serve on it inside the mesh", p.Port, iface.Name)
		}
	}
	return ""
}

// ownerDeclaredBridge: --bridge-policy=deny refuses only a bridge the owner
// asked for. KubeVirt's own webhook and virt-controller add a bridge
// interface to every VMI that declares none (under the default KubeVirt CR),
// so for a VirtualMachine's VMI the VM's template says what its owner wrote;
// a standalone VMI's defaulted bridge cannot be told apart and counts.
func (m *mutator) ownerDeclaredBridge(name string) bool {
	if m.vm == nil || m.vm.Spec.Template == nil {
		return true
	}
	for _, iface := range m.vm.Spec.Template.Spec.Domain.Devices.Interfaces {
		if iface.Name == name {
			return iface.Bridge != nil
		}
	}
	return false
}
