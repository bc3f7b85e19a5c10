package functional

import (
	"context"
	"encoding/json"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/controllers"
	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/onboard"
)

// legacyGuestVM is a VM its owner wrote long before the mesh: its pod
// network bound as masquerade (so it can live-migrate) and its own app
// label, which its launcher pods carry.
func legacyGuestVM(name string) *kubevirtv1.VirtualMachine {
	vm := guestVM(name, "")
	spec := &vm.Spec.Template.Spec
	spec.Domain.Devices.Interfaces[0].InterfaceBindingMethod = kubevirtv1.InterfaceBindingMethod{Masquerade: &kubevirtv1.InterfaceMasquerade{}}
	if vm.Spec.Template.ObjectMeta.Labels == nil {
		vm.Spec.Template.ObjectMeta.Labels = map[string]string{}
	}
	vm.Spec.Template.ObjectMeta.Labels[mesh.AppLabel] = name
	return vm
}

// labelNamespace merges labels into namespace ns.
func labelNamespace(ctx context.Context, ns string, labels map[string]string) {
	GinkgoHelper()
	patch := map[string]any{"metadata": map[string]any{"labels": labels}}
	raw, err := json.Marshal(patch)
	Expect(err).NotTo(HaveOccurred())
	_, err = k8s.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, raw, metav1.PatchOptions{})
	Expect(err).NotTo(HaveOccurred())
}

// needTwoNodes fails the spec early when a migration cannot happen.
func needTwoNodes(ctx context.Context) {
	GinkgoHelper()
	nodes, err := k8s.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	Expect(err).NotTo(HaveOccurred())
	if len(nodes.Items) < 2 {
		Fail("live migration needs two schedulable nodes (KUBEVIRT_NUM_NODES=2); filter this spec out with --label-filter='!migration'")
	}
}

// migrationDone waits for migration name in ns to succeed.
func migrationDone(ctx context.Context, ns, name string) {
	GinkgoHelper()
	Eventually(func() (kubevirtv1.VirtualMachineInstanceMigrationPhase, error) {
		m, err := virtClient.VirtualMachineInstanceMigration(ns).Get(ctx, name, getOptions)
		if err != nil {
			return "", err
		}
		return m.Status.Phase, nil
	}).WithContext(ctx).WithTimeout(10 * time.Minute).Should(Equal(kubevirtv1.MigrationSucceeded))
}

var _ = Describe("A VM that was running before its namespace joined the mesh", Label("mesh", "existing", "migration"), func() {
	It("[16] (a) is pinned out of the mesh, and after a live migration still serves HTTP through its Service, its pod Ready", func(ctx SpecContext) {
		needTwoNodes(ctx)
		ns := newNamespace(ctx, nil)
		vm, pod := startVM(ctx, ns, legacyGuestVM("veteran"))
		Expect(hasProxy(pod)).To(BeFalse())

		By("labelling the namespace for Istio injection: virtmesh pins the running VMI")
		labelNamespace(ctx, ns, map[string]string{mesh.NamespaceInjectionLabel: "enabled"})
		Eventually(func() (map[string]string, error) {
			vmi, err := virtClient.VirtualMachineInstance(ns).Get(ctx, vm.Name, getOptions)
			if err != nil {
				return nil, err
			}
			return vmi.Labels, nil
		}).WithContext(ctx).WithTimeout(time.Minute).Should(HaveKeyWithValue(mesh.InjectKey, "false"))
		Eventually(vmState(ctx, ns, vm.Name)).WithContext(ctx).WithTimeout(time.Minute).Should(HaveField("State", mesh.Pinned))

		By("live-migrating it, as a node drain would")
		mig, err := virtClient.VirtualMachineInstanceMigration(ns).Create(ctx, &kubevirtv1.VirtualMachineInstanceMigration{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "drain-"},
			Spec:       kubevirtv1.VirtualMachineInstanceMigrationSpec{VMIName: vm.Name},
		}, createOptions)
		Expect(err).NotTo(HaveOccurred())
		migrationDone(ctx, ns, mig.Name)
		target := waitLauncherReady(ctx, ns, vm.Name)
		Expect(target.UID).NotTo(Equal(pod.UID))
		Expect(hasProxy(target)).To(BeFalse(), "the pin kept Istio's injector away from the target pod")

		outsider := clientPod(ctx, newNamespace(ctx, nil), false)
		Eventually(func() string {
			body, code := curl(ctx, outsider, serviceURL(ns, vm.Name, ""))
			return code + " " + body
		}).WithContext(ctx).WithTimeout(2 * time.Minute).Should(Equal("200 hello from " + vm.Name))
		Expect(vmState(ctx, ns, vm.Name)()).To(HaveField("State", mesh.Pinned))

		By("the namespace leaves the mesh: the pin goes, and only the pin (KubeVirt refuses any change to its own labels)")
		_, err = k8s.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType,
			[]byte(`{"metadata":{"labels":{"`+mesh.NamespaceInjectionLabel+`":null}}}`), metav1.PatchOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			vmi, err := virtClient.VirtualMachineInstance(ns).Get(ctx, vm.Name, getOptions)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(vmi.Labels).NotTo(HaveKey(mesh.InjectKey))
			g.Expect(vmi.Annotations).NotTo(HaveKey(mesh.PinnedAnnotation))
			g.Expect(vmi.Labels).To(HaveKeyWithValue(kubevirtv1.NodeNameLabel, vmi.Status.NodeName))
			g.Expect(vmi.Annotations).To(HaveKey("kubevirt.io/latest-observed-api-version"))
		}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())
	}, SpecTimeout(25*time.Minute))

	It("[17] (b) with onboard, joins the mesh by virtmesh's live migration: a ready istio-proxy, meshed clients served, STRICT mTLS refuses others", func(ctx SpecContext) {
		needTwoNodes(ctx)
		ns := newNamespace(ctx, nil)
		vm, pod := startVM(ctx, ns, legacyGuestVM("settler"))
		Expect(hasProxy(pod)).To(BeFalse())

		By("labelling the namespace for Istio injection, with virtmesh.io/existing-vmis=onboard")
		labelNamespace(ctx, ns, map[string]string{mesh.NamespaceInjectionLabel: "enabled", mesh.ExistingVMIsLabel: string(mesh.ExistingOnboard)})
		var name string
		Eventually(func() (int, error) {
			list, err := virtClient.VirtualMachineInstanceMigration(ns).List(ctx, metav1.ListOptions{LabelSelector: onboard.MigrationLabel})
			if err != nil {
				return 0, err
			}
			if len(list.Items) == 1 {
				name = list.Items[0].Name
			}
			return len(list.Items), nil
		}).WithContext(ctx).WithTimeout(2 * time.Minute).Should(Equal(1))
		migrationDone(ctx, ns, name)

		target := waitLauncherReady(ctx, ns, vm.Name)
		Expect(target.UID).NotTo(Equal(pod.UID))
		Expect(hasProxy(target)).To(BeTrue())
		Eventually(vmState(ctx, ns, vm.Name)).WithContext(ctx).WithTimeout(2 * time.Minute).Should(And(
			HaveField("State", mesh.Meshed), HaveField("Proxy", "ready")))

		pa := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
			"metadata": map[string]any{"name": "strict", "namespace": ns},
			"spec":     map[string]any{"mtls": map[string]any{"mode": "STRICT"}},
		}}
		Expect(cl.Create(ctx, pa)).To(Succeed())
		insider := clientPod(ctx, ns, true)
		Eventually(func() string {
			body, code := curl(ctx, insider, serviceURL(ns, vm.Name, ""))
			return code + " " + body
		}).WithContext(ctx).WithTimeout(2 * time.Minute).Should(Equal("200 hello from " + vm.Name))
		outsider := clientPod(ctx, newNamespace(ctx, nil), false)
		Eventually(func() string {
			_, code := curl(ctx, outsider, serviceURL(ns, vm.Name, ""))
			return code
		}).WithContext(ctx).WithTimeout(2*time.Minute).Should(Equal("000"), "a plaintext client got an HTTP answer")
	}, SpecTimeout(25*time.Minute))
})

// No live migration happens here: one node is enough.
var _ = Describe("A VM that was running before its namespace joined the mesh, with no injector for it", Label("mesh", "existing"), func() {
	It("[18] (c) with onboard, but no Istio injector for the namespace's revision, stays pinned and reports why: no migration starts", func(ctx SpecContext) {
		ns := newNamespace(ctx, nil)
		vm, pod := startVM(ctx, ns, legacyGuestVM("stranded"))
		Expect(hasProxy(pod)).To(BeFalse())

		By("labelling the namespace for an Istio revision that is not installed, with virtmesh.io/existing-vmis=onboard")
		labelNamespace(ctx, ns, map[string]string{mesh.RevisionLabel: "virtmesh-e2e-no-such-revision",
			mesh.ExistingVMIsLabel: string(mesh.ExistingOnboard)})
		Eventually(vmState(ctx, ns, vm.Name)).WithContext(ctx).WithTimeout(time.Minute).Should(HaveField("State", mesh.Pinned))
		Eventually(vmEventMessages).WithArguments(ctx, ns, vm.Name, controllers.ReasonCannotOnboard).WithContext(ctx).
			WithTimeout(time.Minute).Should(ContainElement(ContainSubstring("no Istio injector would give its new pod a proxy")))
		Consistently(func() (int, error) {
			list, err := virtClient.VirtualMachineInstanceMigration(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return 0, err
			}
			return len(list.Items), nil
		}).WithContext(ctx).WithTimeout(30*time.Second).Should(BeZero(), "a migration would give the VM a pod without a proxy")
		Expect(launcherPods(ctx, ns, vm.Name)).To(ConsistOf(HaveField("UID", pod.UID)))
	}, SpecTimeout(15*time.Minute))
})
