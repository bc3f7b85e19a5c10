package testkit

import (
	"fmt"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// Sizes of LargeVMI.
const (
	largeDisks      = 20
	largeInterfaces = 8
	largePorts      = 40
)

// SmallVMI is a VMI with nothing but its name: no network, no disk.
func SmallVMI(namespace, name string) *kubevirtv1.VirtualMachineInstance {
	return &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
}

// LargeVMI is a VMI at the far end of what owners write: 20 disks, 8 bridge
// interfaces (the pod network's "default", the others on Multus networks) and
// 40 ports on the pod interface.
func LargeVMI(namespace, name string) *kubevirtv1.VirtualMachineInstance {
	vmi := SmallVMI(namespace, name)
	spec := &vmi.Spec
	for i := range largeDisks {
		spec.Domain.Devices.Disks = append(spec.Domain.Devices.Disks, kubevirtv1.Disk{Name: fmt.Sprintf("disk%d", i)})
	}
	spec.Networks = append(spec.Networks, *kubevirtv1.DefaultPodNetwork())
	for i := range largeInterfaces {
		iface := kubevirtv1.Interface{Name: fmt.Sprintf("net%d", i),
			InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}}
		if i == 0 {
			iface.Name = "default"
			for p := range int32(largePorts) {
				iface.Ports = append(iface.Ports, httpPort(8000+p, "TCP"))
			}
		} else {
			spec.Networks = append(spec.Networks, kubevirtv1.Network{Name: iface.Name,
				NetworkSource: kubevirtv1.NetworkSource{Multus: &kubevirtv1.MultusNetwork{NetworkName: "vlan" + strconv.Itoa(i)}}})
		}
		spec.Domain.Devices.Interfaces = append(spec.Domain.Devices.Interfaces, iface)
	}
	return vmi
}

// PlainVMI is a VMI as a VM owner writes it, with no Istio step: no
// annotation, no labels, and KubeVirt's default bridge binding on the pod
// network, serving port 8080 ("http").
func PlainVMI(name string) *kubevirtv1.VirtualMachineInstance {
	return &kubevirtv1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: kubevirtv1.VirtualMachineInstanceSpec{Domain: kubevirtv1.DomainSpec{
			Devices: kubevirtv1.Devices{Interfaces: []kubevirtv1.Interface{{
				Name: "default", InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}},
				Ports: []kubevirtv1.Port{{Name: "http", Port: 8080}},
			}}},
		}, Networks: []kubevirtv1.Network{*kubevirtv1.DefaultPodNetwork()}},
	}
}

// MeshVM is a halted VirtualMachine as a VM owner writes it: a masquerade
// pod network serving ports (named http-<port>), and app and version
// template labels when not empty.
func MeshVM(name, app, version string, ports ...int32) *kubevirtv1.VirtualMachine {
	labels := map[string]string{}
	if app != "" {
		labels[mesh.AppLabel] = app
	}
	if version != "" {
		labels[mesh.VersionLabel] = version
	}
	return &kubevirtv1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: kubevirtv1.VirtualMachineSpec{
			RunStrategy: ptr.To(kubevirtv1.RunStrategyHalted),
			Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: kubevirtv1.VirtualMachineInstanceSpec{
					Domain:   kubevirtv1.DomainSpec{Devices: kubevirtv1.Devices{Interfaces: []kubevirtv1.Interface{masqueradeInterface("", ports)}}},
					Networks: []kubevirtv1.Network{*kubevirtv1.DefaultPodNetwork()},
				},
			},
		},
	}
}

// VMISpec is seed 004's VMI spec serving ports (TCP, named http-<port>)
// instead of seed 004's one.
func VMISpec(ports ...int32) kubevirtv1.VirtualMachineInstanceSpec {
	spec := SeedVMI("").Spec
	spec.Domain.Devices.Interfaces = []kubevirtv1.Interface{masqueradeInterface("TCP", ports)}
	return spec
}

// MeshedVMI is a VMI of app serving ports (VMISpec) as the webhook stores it:
// injected, labelled with its app, the mutations recorded.
func MeshedVMI(namespace, name, app string, ports ...int32) *kubevirtv1.VirtualMachineInstance {
	return &kubevirtv1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace,
			Labels: map[string]string{mesh.AppLabel: app, mesh.InjectKey: "true"},
			Annotations: map[string]string{mesh.InjectKey: "true", mesh.MutationsAnnotation: "inject,reroute,app",
				mesh.RerouteAnnotation: mesh.KubeVirtMasqueradeBridge}},
		Spec: VMISpec(ports...),
	}
}

// masqueradeInterface is the pod interface "default", bound with masquerade,
// serving ports.
func masqueradeInterface(protocol string, ports []int32) kubevirtv1.Interface {
	iface := kubevirtv1.Interface{Name: "default",
		InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Masquerade: &kubevirtv1.InterfaceMasquerade{}}}
	for _, p := range ports {
		iface.Ports = append(iface.Ports, httpPort(p, protocol))
	}
	return iface
}

// httpPort is port named http-<port>.
func httpPort(port int32, protocol string) kubevirtv1.Port {
	return kubevirtv1.Port{Name: "http-" + strconv.Itoa(int(port)), Port: port, Protocol: protocol}
}
