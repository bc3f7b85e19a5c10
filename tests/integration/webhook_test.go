package integration

import (
	"encoding/json"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"kubevirt.io/client-go/kubevirt"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

// vmOwner returns KubeVirt's typed client acting as a VM owner, and the
// warnings that owner is shown.
func vmOwner() (kubevirt.Interface, *testkit.Warnings) {
	GinkgoHelper()
	cfg := cp.Config()
	w := &testkit.Warnings{}
	cfg.WarningHandler = w
	c, err := kubevirt.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())
	return c, w
}

var _ = Describe("The VMI webhook", func() {
	enabled := map[string]string{mesh.NamespaceInjectionLabel: "enabled"}

	It("makes a VMI in a mesh namespace Istio-ready, tells the owner, and KubeVirt's schema accepts it", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabled)
		virt, warnings := vmOwner()
		_, err := virt.KubevirtV1().VirtualMachineInstances(ns).Create(ctx, testkit.PlainVMI("web"), metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())

		stored := &kubevirtv1.VirtualMachineInstance{}
		Expect(adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, stored)).To(Succeed())
		Expect(stored.Labels).To(HaveKeyWithValue(mesh.InjectKey, "true"))
		Expect(stored.Labels).To(HaveKeyWithValue(mesh.AppLabel, "web"))
		Expect(stored.Annotations).To(HaveKeyWithValue(mesh.InjectKey, "true"))
		Expect(stored.Annotations).To(HaveKeyWithValue(mesh.MutationsAnnotation, "inject,binding,reroute,app"))
		Expect(stored.Annotations).To(HaveKeyWithValue(mesh.RerouteAnnotation, mesh.KubeVirtMasqueradeBridge))
		iface := stored.Spec.Domain.Devices.Interfaces[0]
		Expect(iface.Bridge).To(BeNil())
		Expect(iface.Masquerade).NotTo(BeNil())
		Expect(iface.Ports).To(ConsistOf(kubevirtv1.Port{Name: "http", Port: 8080}))
		Expect(warnings.All()).To(ContainElement(
			`virtmesh: interface "default" switched from bridge to masquerade (Istio needs masquerade)`))
	})

	It("stores a VMI in a namespace outside the mesh exactly as written", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		virt, warnings := vmOwner()
		sent := testkit.PlainVMI("plain")
		_, err := virt.KubevirtV1().VirtualMachineInstances(ns).Create(ctx, sent, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		stored := &kubevirtv1.VirtualMachineInstance{}
		Expect(adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "plain"}, stored)).To(Succeed())
		Expect(jsonOf(stored.Spec)).To(MatchJSON(jsonOf(sent.Spec)))
		Expect(stored.Labels).To(BeEmpty())
		Expect(stored.Annotations).To(BeEmpty())
		Expect(warnings.All()).To(BeEmpty())
	})

	It("leaves a VMI that opts out alone", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabled)
		virt, _ := vmOwner()
		vmi := testkit.PlainVMI("out")
		vmi.Labels = map[string]string{mesh.InjectKey: "false"}
		_, err := virt.KubevirtV1().VirtualMachineInstances(ns).Create(ctx, vmi, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		stored := &kubevirtv1.VirtualMachineInstance{}
		Expect(adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "out"}, stored)).To(Succeed())
		Expect(stored.Annotations).NotTo(HaveKey(mesh.InjectKey))
		Expect(stored.Spec.Domain.Devices.Interfaces[0].Bridge).NotTo(BeNil())
	})

	It("denies an opt-out in an enforced namespace, naming the label", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, map[string]string{mesh.NamespaceInjectionLabel: "enabled", mesh.EnforceLabel: "true"})
		virt, _ := vmOwner()
		vmi := testkit.PlainVMI("rebel")
		vmi.Labels = map[string]string{mesh.InjectKey: "false"}
		_, err := virt.KubevirtV1().VirtualMachineInstances(ns).Create(ctx, vmi, metav1.CreateOptions{})
		Expect(err).To(MatchError(ContainSubstring(mesh.EnforceLabel + "=true")))
	})

	It("mutates a dry-run VMI the same way and stores nothing", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabled)
		virt, warnings := vmOwner()
		got, err := virt.KubevirtV1().VirtualMachineInstances(ns).Create(ctx, testkit.PlainVMI("dry"),
			metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Labels).To(HaveKeyWithValue(mesh.InjectKey, "true"))
		Expect(got.Spec.Domain.Devices.Interfaces[0].Masquerade).NotTo(BeNil())
		Expect(warnings.All()).NotTo(BeEmpty())
		Expect(adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "dry"}, &kubevirtv1.VirtualMachineInstance{})).
			NotTo(Succeed())
	})

	It("names a VirtualMachine's VMI after the VM", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabled)
		virt, _ := vmOwner()
		vm, err := virt.KubevirtV1().VirtualMachines(ns).Create(ctx, &kubevirtv1.VirtualMachine{
			ObjectMeta: metav1.ObjectMeta{Name: "shop"},
			Spec: kubevirtv1.VirtualMachineSpec{
				RunStrategy: ptrTo(kubevirtv1.RunStrategyHalted), Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{},
			},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		// As virt-controller does when it starts the VM.
		vmi := testkit.PlainVMI("shop")
		vmi.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(vm, kubevirtv1.VirtualMachineGroupVersionKind)}
		created, err := virt.KubevirtV1().VirtualMachineInstances(ns).Create(ctx, vmi, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(created.Labels).To(HaveKeyWithValue(mesh.AppLabel, "shop"))
	})
})

func jsonOf(v any) string {
	GinkgoHelper()
	b, err := json.Marshal(v)
	Expect(err).NotTo(HaveOccurred())
	return string(b)
}
