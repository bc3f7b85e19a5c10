package testkit

import (
	"bytes"
	"testing"

	corev1 "k8s.io/api/core/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func TestSeed004YAMLDecodesStrictly(t *testing.T) {
	nsDoc, _, ok := bytes.Cut(Seed004YAML, []byte("\n---\n"))
	if !ok {
		t.Fatal("seed004.yaml: no --- between the Namespace and the VMI")
	}
	ns := &corev1.Namespace{}
	if err := yaml.UnmarshalStrict(nsDoc, ns); err != nil {
		t.Fatalf("namespace: %v", err)
	}
	if ns.Labels["istio-injection"] != "enabled" {
		t.Errorf("namespace %q is not labelled istio-injection=enabled: %v", ns.Name, ns.Labels)
	}
	if _, err := decodeSeedVMI(); err != nil {
		t.Fatal(err)
	}
}

func TestSeedVMI(t *testing.T) {
	vmi := SeedVMI("vms")
	if vmi.Name != "istio-vmi" || vmi.Namespace != "vms" || vmi.Kind != "VirtualMachineInstance" {
		t.Fatalf("got %s %s/%s, want VirtualMachineInstance vms/istio-vmi", vmi.Kind, vmi.Namespace, vmi.Name)
	}
	ifaces := vmi.Spec.Domain.Devices.Interfaces
	if len(ifaces) != 1 || ifaces[0].Masquerade == nil || len(ifaces[0].Ports) != 1 || ifaces[0].Ports[0].Port != 8080 {
		t.Errorf("pod interface: got %+v, want masquerade serving 8080", ifaces)
	}
	if len(vmi.Spec.Volumes) != 2 || vmi.Spec.ReadinessProbe == nil {
		t.Errorf("want 2 volumes and a readiness probe, got %+v", vmi.Spec)
	}
	// A fresh copy every call: changing one leaves the next alone.
	vmi.Spec.Domain.Devices.Interfaces[0].Ports[0].Port = 1
	if again := SeedVMI("vms"); again.Spec.Domain.Devices.Interfaces[0].Ports[0].Port != 8080 {
		t.Error("SeedVMI shares state between calls")
	}
}

func TestSeedVMAndVMIFor(t *testing.T) {
	vm := SeedVM("demo")
	if vm.Name != SeedVMName || vm.Namespace != "demo" || vm.Kind != "VirtualMachine" || vm.APIVersion != "kubevirt.io/v1" {
		t.Fatalf("got %s %s %s/%s", vm.APIVersion, vm.Kind, vm.Namespace, vm.Name)
	}
	if vm.Spec.RunStrategy == nil || *vm.Spec.RunStrategy != kubevirtv1.RunStrategyAlways {
		t.Errorf("run strategy %v, want Always", vm.Spec.RunStrategy)
	}
	if vm.Spec.Template.ObjectMeta.Name != "" {
		t.Errorf("template named %q; KubeVirt names the VMI after the VM", vm.Spec.Template.ObjectMeta.Name)
	}
	vm.UID = "0b7c"
	vmi := VMIFor(vm)
	if vmi.Name != vm.Name || vmi.Namespace != "demo" || vmi.Labels[kubevirtv1.VirtualMachineLabel] != vm.Name {
		t.Errorf("got VMI %s/%s labels %v", vmi.Namespace, vmi.Name, vmi.Labels)
	}
	owner := vmi.OwnerReferences
	if len(owner) != 1 || owner[0].Kind != "VirtualMachine" || owner[0].UID != "0b7c" || owner[0].Controller == nil || !*owner[0].Controller {
		t.Errorf("owner references %+v, want the VM as controller", owner)
	}
	if vm.Spec.Template.ObjectMeta.Labels != nil {
		t.Errorf("VMIFor changed the VM's template: %v", vm.Spec.Template.ObjectMeta.Labels)
	}
	if len(vmi.Spec.Domain.Devices.Disks) != len(SeedVMI("").Spec.Domain.Devices.Disks) {
		t.Error("VMIFor did not copy the template's spec")
	}
}
