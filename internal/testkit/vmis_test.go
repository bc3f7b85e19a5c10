package testkit

import (
	"testing"

	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

func TestLargeVMI(t *testing.T) {
	vmi := LargeVMI("vms", "large")
	devices := vmi.Spec.Domain.Devices
	// The sizes docs/benchmarks.md reports.
	if len(devices.Disks) != 20 || len(devices.Interfaces) != 8 || len(vmi.Spec.Networks) != 8 {
		t.Fatalf("got %d disks, %d interfaces, %d networks", len(devices.Disks), len(devices.Interfaces), len(vmi.Spec.Networks))
	}
	pod := mesh.PodInterface(&vmi.Spec)
	if pod == nil || pod.Name != "default" || len(pod.Ports) != 40 {
		t.Fatalf("pod interface %+v, want default with 40 ports", pod)
	}
	multus := 0
	for i, iface := range devices.Interfaces {
		if iface.Bridge == nil {
			t.Errorf("interface %s is not bridged", iface.Name)
		}
		if vmi.Spec.Networks[i].Name != iface.Name {
			t.Errorf("network %d is %s, interface %s", i, vmi.Spec.Networks[i].Name, iface.Name)
		}
		if vmi.Spec.Networks[i].Multus != nil {
			multus++
		}
	}
	if multus != 7 {
		t.Errorf("%d Multus networks, want 7", multus)
	}
}

func TestVMIBuilders(t *testing.T) {
	ports := func(iface kubevirtv1.Interface) []kubevirtv1.Port { return iface.Ports }
	tests := []struct {
		name    string
		iface   kubevirtv1.Interface
		want    []kubevirtv1.Port
		bridged bool
	}{
		{"PlainVMI", PlainVMI("p").Spec.Domain.Devices.Interfaces[0], []kubevirtv1.Port{{Name: "http", Port: 8080}}, true},
		{"MeshVM", MeshVM("m", "a", "v1", 8080, 9090).Spec.Template.Spec.Domain.Devices.Interfaces[0],
			[]kubevirtv1.Port{{Name: "http-8080", Port: 8080}, {Name: "http-9090", Port: 9090}}, false},
		{"MeshedVMI", MeshedVMI("ns", "m", "a", 8080).Spec.Domain.Devices.Interfaces[0],
			[]kubevirtv1.Port{{Name: "http-8080", Port: 8080, Protocol: "TCP"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.iface.Name != "default" || (tt.iface.Bridge != nil) != tt.bridged || (tt.iface.Masquerade != nil) == tt.bridged {
				t.Errorf("interface %+v, want default bridged=%v", tt.iface, tt.bridged)
			}
			got := ports(tt.iface)
			if len(got) != len(tt.want) {
				t.Fatalf("ports %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("port %d: %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestMeshVMLabels(t *testing.T) {
	if labels := MeshVM("m", "", "").Spec.Template.ObjectMeta.Labels; len(labels) != 0 {
		t.Errorf("no app, no version: labels %v", labels)
	}
	labels := MeshVM("m", "shop", "v2").Spec.Template.ObjectMeta.Labels
	if labels[mesh.AppLabel] != "shop" || labels[mesh.VersionLabel] != "v2" {
		t.Errorf("labels %v", labels)
	}
	if vmi := MeshedVMI("ns", "n", "shop"); vmi.Labels[mesh.AppLabel] != "shop" || vmi.Annotations[mesh.InjectKey] != "true" {
		t.Errorf("MeshedVMI metadata %+v", vmi.ObjectMeta)
	}
}
