package main

import (
	"encoding/json"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

// reviews returns the request mix, as the API server would send it: VMIs that
// virt-controller creates from seed 004's VirtualMachine (most of the traffic),
// the same VMI on reinvocation (already mutated: no patch), a standalone VMI
// with bridge binding, and testkit's large VMI started by virt-controller
// (masquerade on the pod network, as the figures in docs/benchmarks.md had it).
func reviews() ([][]byte, error) {
	typical := seedVMI()
	bridge := seedVMI()
	bridge.Name, bridge.OwnerReferences = "legacy-bridge", nil
	bridge.Spec.Domain.Devices.Interfaces[0].InterfaceBindingMethod = kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}
	mutated := seedVMI()
	mutated.Labels["sidecar.istio.io/inject"] = "true"
	mutated.Labels["app"] = "istio-vm"
	mutated.Annotations["sidecar.istio.io/inject"] = "true"
	mutated.Annotations["virtmesh.io/mutations"] = "inject,reroute,app"
	mutated.Annotations[mesh.RerouteAnnotation] = mesh.KubeVirtMasqueradeBridge
	large := testkit.LargeVMI("vms", "large")
	seed := seedVMI()
	large.Labels, large.Annotations, large.OwnerReferences, large.Finalizers = seed.Labels, seed.Annotations, seed.OwnerReferences, seed.Finalizers
	large.Spec.Domain.Devices.Interfaces[0].InterfaceBindingMethod = kubevirtv1.InterfaceBindingMethod{Masquerade: &kubevirtv1.InterfaceMasquerade{}}
	// Seven typical requests for each of the others.
	mix := []*kubevirtv1.VirtualMachineInstance{typical, typical, typical, typical, typical, typical, typical, mutated, bridge, large}
	var out [][]byte
	for i, vmi := range mix {
		body, err := review(i, vmi)
		if err != nil {
			return nil, err
		}
		out = append(out, body)
	}
	return out, nil
}

// review is the AdmissionReview body for creating vmi, as virt-controller.
func review(i int, vmi *kubevirtv1.VirtualMachineInstance) ([]byte, error) {
	raw, err := json.Marshal(vmi)
	if err != nil {
		return nil, err
	}
	return json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID(fmt.Sprintf("0d4c1f2e-load-%04d", i)),
			Kind:      metav1.GroupVersionKind{Group: "kubevirt.io", Version: "v1", Kind: "VirtualMachineInstance"},
			Resource:  metav1.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachineinstances"},
			Namespace: "vms", Name: vmi.Name, Operation: admissionv1.Create,
			UserInfo: authenticationUser(),
			Object:   runtime.RawExtension{Raw: raw},
			DryRun:   ptr.To(false),
			Options:  runtime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1","fieldManager":"virt-controller"}`)},
		},
	})
}

// seedVM is seed 004's VirtualMachine, which owns the typical requests' VMIs.
func seedVM() *kubevirtv1.VirtualMachine {
	vm := testkit.SeedVM("vms")
	vm.UID = "5b0a1c9e-2f3d-4c4e-9a8b-7d6e5f4a3b2c"
	return vm
}

// seedVMI is the VMI virt-controller creates from seed 004's VirtualMachine,
// with what virt-controller adds besides the template: its labels,
// annotations and finalizer, and the machine type.
func seedVMI() *kubevirtv1.VirtualMachineInstance {
	vmi := testkit.VMIFor(seedVM())
	vmi.Labels["kubevirt.io/size"] = "small"
	vmi.Labels["kubevirt.io/domain"] = vmi.Name
	vmi.Annotations = map[string]string{
		"kubevirt.io/latest-observed-api-version":  "v1",
		"kubevirt.io/storage-observed-api-version": "v1",
	}
	vmi.Finalizers = []string{"kubevirt.io/virtualMachineControllerFinalize"}
	vmi.Spec.Domain.Machine = &kubevirtv1.Machine{Type: "q35"}
	vmi.Spec.Domain.Devices.Interfaces[0].Ports = []kubevirtv1.Port{{Name: "http", Port: 8080, Protocol: "TCP"}}
	return vmi
}

func authenticationUser() authenticationv1.UserInfo {
	return authenticationv1.UserInfo{Username: "system:serviceaccount:kubevirt:kubevirt-controller",
		UID: "3e9f2a55-1c0b-4f7e-8d2a-6b5c4d3e2f1a", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kubevirt", "system:authenticated"}}
}
