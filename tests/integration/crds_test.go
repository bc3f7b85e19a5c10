package integration

import (
	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubevirtv1 "kubevirt.io/api/core/v1"
	poolv1 "kubevirt.io/api/pool/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

var _ = Describe("KubeVirt and NAD CRDs", func() {
	It("prunes a field KubeVirt's schema does not know and keeps the ones it does", func(ctx SpecContext) {
		vmi := unstructuredVMI(newNamespace(ctx), "pruned", map[string]any{
			"notAKubeVirtField": "dropped",
			"domain": map[string]any{
				"devices": map[string]any{
					"interfaces": []any{map[string]any{"name": "default", "masquerade": map[string]any{}, "bogus": true}},
				},
			},
			"networks": []any{map[string]any{"name": "default", "pod": map[string]any{}}},
		})
		Expect(adminClient.Create(ctx, vmi)).To(Succeed())

		stored := &unstructured.Unstructured{}
		stored.SetGroupVersionKind(vmi.GroupVersionKind())
		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(vmi), stored)).To(Succeed())
		Expect(stored.Object["spec"]).NotTo(HaveKey("notAKubeVirtField"))
		ifaces, found, err := unstructured.NestedSlice(stored.Object, "spec", "domain", "devices", "interfaces")
		Expect(err).NotTo(HaveOccurred())
		Expect(found).To(BeTrue())
		Expect(ifaces).To(ConsistOf(HaveKeyWithValue("masquerade", map[string]any{})))
		Expect(ifaces[0]).NotTo(HaveKey("bogus"))
		networks, _, err := unstructured.NestedSlice(stored.Object, "spec", "networks")
		Expect(err).NotTo(HaveOccurred())
		Expect(networks).To(ConsistOf(HaveKeyWithValue("pod", map[string]any{})))
	})

	It("rejects a VMI that violates KubeVirt's schema", func(ctx SpecContext) {
		vmi := unstructuredVMI(newNamespace(ctx), "invalid", map[string]any{"domain": map[string]any{"devices": "not-an-object"}})
		Expect(adminClient.Create(ctx, vmi)).To(MatchError(ContainSubstring("spec.domain.devices")))
	})

	DescribeTable("serves", func(ctx SpecContext, list client.ObjectList) {
		Expect(adminClient.List(ctx, list)).To(Succeed())
	},
		Entry("VirtualMachineInstances", &kubevirtv1.VirtualMachineInstanceList{}),
		Entry("VirtualMachines", &kubevirtv1.VirtualMachineList{}),
		Entry("VirtualMachineInstanceReplicaSets", &kubevirtv1.VirtualMachineInstanceReplicaSetList{}),
		Entry("VirtualMachinePools", listOf(poolv1.SchemeGroupVersion.WithKind("VirtualMachinePoolList"))),
		Entry("NetworkAttachmentDefinitions", &nadv1.NetworkAttachmentDefinitionList{}),
	)
})

// listOf returns an unstructured list of a kind the scheme need not know.
func listOf(gvk schema.GroupVersionKind) *unstructured.UnstructuredList {
	l := &unstructured.UnstructuredList{}
	l.SetGroupVersionKind(gvk)
	return l
}

// unstructuredVMI is a VMI with spec as written, whatever KubeVirt's schema
// says of it.
func unstructuredVMI(ns, name string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kubevirt.io/v1",
		"kind":       "VirtualMachineInstance",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec":       spec,
	}}
}
