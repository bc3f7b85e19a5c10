package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
	vmwebhook "github.com/virtmesh/virtmesh/webhook"
)

func multusAndPod() kubevirtv1.VirtualMachineInstanceSpec {
	return kubevirtv1.VirtualMachineInstanceSpec{
		Networks: []kubevirtv1.Network{
			{Name: "vlan", NetworkSource: kubevirtv1.NetworkSource{Multus: &kubevirtv1.MultusNetwork{NetworkName: "vlan10"}}},
			*kubevirtv1.DefaultPodNetwork(),
		},
		Domain: kubevirtv1.DomainSpec{Devices: kubevirtv1.Devices{
			Interfaces: []kubevirtv1.Interface{
				{Name: "vlan", Ports: []kubevirtv1.Port{{Port: 1}}, InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}},
				{Name: "default", Ports: []kubevirtv1.Port{{Name: "http", Port: 8080}}, InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Masquerade: &kubevirtv1.InterfaceMasquerade{}}},
			},
			Disks: []kubevirtv1.Disk{{Name: "root"}},
		}},
		Volumes: []kubevirtv1.Volume{{Name: "root", VolumeSource: kubevirtv1.VolumeSource{ContainerDisk: &kubevirtv1.ContainerDiskSource{Image: "x"}}}},
	}
}

func TestTrimVMIKeepsWhatMembershipReads(t *testing.T) {
	in := &kubevirtv1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "vms", UID: "u", ResourceVersion: "7",
			Labels: map[string]string{"app": "web", mesh.InjectKey: "true"},
			Annotations: map[string]string{mesh.InjectKey: "true", mesh.ServiceAnnotation: "false", mesh.PortProtocolsAnnotation: "8080=http",
				"kubectl.kubernetes.io/last-applied-configuration": "{...a big blob...}"},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: "a"}}},
		Spec:   multusAndPod(),
		Status: kubevirtv1.VirtualMachineInstanceStatus{NodeName: "node01", Phase: kubevirtv1.Running},
	}
	got, err := trimVMI(in)
	if err != nil {
		t.Fatal(err)
	}
	out := got.(*kubevirtv1.VirtualMachineInstance)
	if len(out.Annotations) != 3 || out.ManagedFields != nil || out.Status.Phase != "" || out.Spec.Volumes != nil || out.Spec.Domain.Devices.Disks != nil {
		t.Fatalf("kept too much: %+v", out)
	}
	if out.Labels["app"] != "web" || out.UID != "u" || out.ResourceVersion != "7" || !mesh.OwnedByVM(&out.ObjectMeta) {
		t.Fatalf("lost metadata: %+v", out.ObjectMeta)
	}
	if !mesh.HasPodNetwork(&out.Spec) || len(vmiWorkload(out).ports()) != 1 || vmiWorkload(out).ports()[0].Name != "http" {
		t.Fatalf("lost the pod interface: %+v", out.Spec)
	}
	if out.Spec.Domain.Devices.Interfaces[0].Ports != nil {
		t.Fatal("kept a Multus interface's ports")
	}

	// Multus only: still no pod network after trimming.
	multus := in.DeepCopy()
	multus.Spec.Networks = multus.Spec.Networks[:1]
	multus.Spec.Domain.Devices.Interfaces = multus.Spec.Domain.Devices.Interfaces[:1]
	got, _ = trimVMI(multus)
	if mesh.HasPodNetwork(&got.(*kubevirtv1.VirtualMachineInstance).Spec) {
		t.Fatal("a Multus-only VMI gained a pod network")
	}
	// autoattachPodInterface: false survives.
	none := &kubevirtv1.VirtualMachineInstance{}
	none.Spec.Domain.Devices.AutoattachPodInterface = ptr.To(false)
	got, _ = trimVMI(none)
	if mesh.HasPodNetwork(&got.(*kubevirtv1.VirtualMachineInstance).Spec) {
		t.Fatal("autoattachPodInterface: false lost")
	}
}

func TestTrimmedChangedIgnoresStatusOnlyUpdates(t *testing.T) {
	a := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "a", ResourceVersion: "1", Labels: map[string]string{"app": "x"}}}
	b := a.DeepCopy()
	b.ResourceVersion = "2" // what a status update leaves after trimming
	if trimmedChanged(a, b) {
		t.Fatal("a resourceVersion bump counted as a change")
	}
	b.Labels["app"] = "y"
	if !trimmedChanged(a, b) {
		t.Fatal("a label change was missed")
	}
	if a.ResourceVersion != "1" {
		t.Fatal("trimmedChanged modified its input")
	}
}

// The Service controller must name a VM's Service exactly as the webhook
// labels the VMIs that VM creates.
func TestVMAppMatchesWebhook(t *testing.T) {
	for name, labels := range map[string]map[string]string{
		"no labels":        nil,
		"app label":        {"app": "shop"},
		"kubernetes name":  {mesh.AppNameLabel: "catalog"},
		"both, app wins":   {"app": "shop", mesh.AppNameLabel: "catalog"},
		"unrelated labels": {"kubevirt.io/size": "small"},
	} {
		vm := &kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: "istio-vm", Namespace: "vms", UID: "vm-uid"},
			Spec: kubevirtv1.VirtualMachineSpec{Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: multusAndPod()}}}
		// What virt-controller creates from the VM.
		vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: *vm.Spec.Template.ObjectMeta.DeepCopy(), Spec: *vm.Spec.Template.Spec.DeepCopy()}
		vmi.Name, vmi.Namespace = vm.Name, vm.Namespace
		vmi.OwnerReferences = []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: vm.Name, UID: vm.UID, Controller: ptr.To(true)}}
		vmwebhook.MutateVMI(vmi, vmwebhook.Env{Namespace: vmwebhook.Namespace{Name: "vms", Labels: map[string]string{"istio-injection": "enabled"}}, VM: vm}, mesh.DefaultConfig(), vmwebhook.DefaultConfig())
		if got, want := mesh.VMApp(vm), vmi.Labels["app"]; got != want {
			t.Errorf("%s: controller says app %q, webhook labels the VMI %q", name, got, want)
		}
	}
}

func TestNoConfigMapCacheWithoutReadableIstioNamespaces(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ReadableIstioNamespaces = []string{}
	for obj := range CacheByObject(cfg) {
		if _, ok := obj.(*corev1.ConfigMap); ok {
			t.Fatal("a ConfigMap cache virtmesh may not fill would never sync and stop the manager")
		}
	}
	cfg.ReadableIstioNamespaces = nil // not probed: all of --istio-namespaces
	found := false
	for obj, by := range CacheByObject(cfg) {
		if _, ok := obj.(*corev1.ConfigMap); ok {
			found = len(by.Namespaces) == 1
		}
	}
	if !found {
		t.Fatal("no ConfigMap cache for istio-system")
	}
}
