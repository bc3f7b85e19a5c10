package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// benchVMIs are a bare VMI, seed 004's istio-vmi as its owner would write it
// now, and a large one (20 disks, 8 interfaces, 40 ports).
func benchVMIs() map[string]*kubevirtv1.VirtualMachineInstance {
	small := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "small", Namespace: "vms"}}

	typical := &kubevirtv1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "istio-vmi", Namespace: "vms"},
		Spec: kubevirtv1.VirtualMachineInstanceSpec{
			Domain: kubevirtv1.DomainSpec{
				Devices: kubevirtv1.Devices{
					Interfaces: []kubevirtv1.Interface{{Name: "default", Ports: []kubevirtv1.Port{{Port: 8080}},
						InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Masquerade: &kubevirtv1.InterfaceMasquerade{}}}},
					Disks: []kubevirtv1.Disk{{Name: "containerdisk"}, {Name: "cloudinitdisk"}},
				},
				Resources: kubevirtv1.ResourceRequirements{Requests: corev1.ResourceList{"memory": resource.MustParse("1024M")}},
			},
			Networks: []kubevirtv1.Network{*kubevirtv1.DefaultPodNetwork()},
			Volumes: []kubevirtv1.Volume{
				{Name: "containerdisk", VolumeSource: kubevirtv1.VolumeSource{ContainerDisk: &kubevirtv1.ContainerDiskSource{Image: "kubevirt/fedora-cloud-container-disk-demo:devel"}}},
				{Name: "cloudinitdisk", VolumeSource: kubevirtv1.VolumeSource{CloudInitNoCloud: &kubevirtv1.CloudInitNoCloudSource{UserData: "#cloud-config\npassword: fedora\n"}}},
			},
		},
	}

	large := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "large", Namespace: "vms"}}
	for i := range 20 {
		large.Spec.Domain.Devices.Disks = append(large.Spec.Domain.Devices.Disks, kubevirtv1.Disk{Name: fmt.Sprintf("disk%d", i)})
	}
	large.Spec.Networks = append(large.Spec.Networks, *kubevirtv1.DefaultPodNetwork())
	for i := range 8 {
		iface := kubevirtv1.Interface{Name: fmt.Sprintf("net%d", i), InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}}
		if i == 0 {
			iface.Name = "default"
			for p := range 40 {
				iface.Ports = append(iface.Ports, kubevirtv1.Port{Port: int32(8000 + p)})
			}
		} else {
			large.Spec.Networks = append(large.Spec.Networks, kubevirtv1.Network{Name: iface.Name,
				NetworkSource: kubevirtv1.NetworkSource{Multus: &kubevirtv1.MultusNetwork{NetworkName: "br"}}})
		}
		large.Spec.Domain.Devices.Interfaces = append(large.Spec.Domain.Devices.Interfaces, iface)
	}
	return map[string]*kubevirtv1.VirtualMachineInstance{"small": small, "typical": typical, "large": large}
}

// BenchmarkMutateVMI measures the mutation alone (goal: typical <= 30us/op).
func BenchmarkMutateVMI(b *testing.B) {
	ns := Namespace{Name: "vms", Labels: map[string]string{"istio-injection": "enabled"}}
	cfg := DefaultConfig()
	for name, vmi := range benchVMIs() {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				MutateVMI(vmi.DeepCopy(), ns, cfg)
			}
		})
	}
}

// BenchmarkHandle measures one admission as the handler sees it: decoding the
// VMI, the mutation, and the JSON diff that becomes the patch.
func BenchmarkHandle(b *testing.B) {
	h := &Handler{Config: DefaultConfig(), NamespaceLabels: meshedNamespace}
	for name, vmi := range benchVMIs() {
		raw, err := json.Marshal(vmi)
		if err != nil {
			b.Fatal(err)
		}
		req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			Operation: admissionv1.Create, Namespace: "vms", Resource: vmiResource, Object: runtime.RawExtension{Raw: raw}}}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if resp := h.Handle(context.Background(), req); !resp.Allowed || len(resp.Patches) == 0 {
					b.Fatalf("not mutated: %+v", resp.Result)
				}
			}
		})
	}
}
