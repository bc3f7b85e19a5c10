package webhook

import (
	"context"
	"encoding/json"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

// benchVMIs are a bare VMI, seed 004's istio-vmi as its owner wrote it, and
// a large one (testkit.LargeVMI).
func benchVMIs() map[string]*kubevirtv1.VirtualMachineInstance {
	return map[string]*kubevirtv1.VirtualMachineInstance{
		"small":   testkit.SmallVMI("vms", "small"),
		"typical": testkit.SeedVMI("vms"),
		"large":   testkit.LargeVMI("vms", "large"),
	}
}

// BenchmarkMutateVMI measures the mutation alone (goal: typical <= 30us/op).
func BenchmarkMutateVMI(b *testing.B) {
	ns := Namespace{Name: "vms", Labels: map[string]string{"istio-injection": "enabled"}}
	cfg := DefaultConfig()
	for name, vmi := range benchVMIs() {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				MutateVMI(vmi.DeepCopy(), Env{Namespace: ns}, mesh.DefaultConfig(), cfg)
			}
		})
	}
}

// BenchmarkHandle measures one admission as the handler sees it: decoding the
// VMI, the mutation, and the JSON diff that becomes the patch.
func BenchmarkHandle(b *testing.B) {
	h := &Handler{Mesh: mesh.DefaultConfig(), Config: DefaultConfig(), NamespaceLabels: meshedNamespace}
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
