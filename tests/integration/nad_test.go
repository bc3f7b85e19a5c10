package integration

import (
	"net/http"
	"os"
	"path/filepath"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/virtmesh/virtmesh/controllers"
	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

var _ = Describe("The NetworkAttachmentDefinition controller", func() {
	It("creates the istio-cni NAD when a namespace joins the mesh and deletes it when it leaves", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		Consistently(nadExists).WithArguments(ctx, ns).WithTimeout(2 * time.Second).Should(BeFalse())

		nsObj := &corev1.Namespace{}
		Expect(adminClient.Get(ctx, client.ObjectKey{Name: ns}, nsObj)).To(Succeed())
		nsObj.Labels["istio-injection"] = "enabled"
		Expect(adminClient.Update(ctx, nsObj)).To(Succeed())
		Eventually(nadExists).WithArguments(ctx, ns).WithTimeout(converge).Should(BeTrue())
		nad := &nadv1.NetworkAttachmentDefinition{}
		Expect(adminClient.Get(ctx, nadKey(ns), nad)).To(Succeed())
		Expect(nad.Labels).To(HaveKeyWithValue(mesh.ManagedByLabel, mesh.ManagedByValue))
		Expect(nad.Spec.Config).To(BeEmpty())
		// On the NAD, in the tenant's namespace (not on the Namespace,
		// whose Events are stored in default).
		Eventually(eventReasons).WithArguments(ctx, ns, "NetworkAttachmentDefinition", "istio-cni").Should(ContainElement(controllers.ReasonNADCreated))

		delete(nsObj.Labels, "istio-injection")
		Expect(adminClient.Update(ctx, nsObj)).To(Succeed())
		Eventually(nadExists).WithArguments(ctx, ns).WithTimeout(converge).Should(BeFalse())
		Eventually(eventReasons).WithArguments(ctx, ns, "NetworkAttachmentDefinition", "istio-cni").Should(ContainElement(controllers.ReasonNADDeleted))
		Expect(eventReasons(ctx, "default", "Namespace", ns)).To(BeEmpty(), "nothing about the NAD in default")
	})

	It("keeps its NAD while a pod that is not a VM's (Istio injected it too) references it; deletes it once none does", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		Eventually(nadExists).WithArguments(ctx, ns).WithTimeout(converge).Should(BeTrue())
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-app", Namespace: ns,
			Annotations: map[string]string{mesh.NetworksAnnotation: "istio-cni"}},
			Spec: corev1.PodSpec{NodeName: "node01", Containers: []corev1.Container{{Name: "app", Image: "nginx"},
				{Name: mesh.ProxyContainer, Image: "docker.io/istio/proxyv2:1.18.7"}}}}
		Expect(adminClient.Create(ctx, pod)).To(Succeed())
		pod.Status.Phase = corev1.PodRunning
		Expect(adminClient.Status().Update(ctx, pod)).To(Succeed())

		By("the namespace leaves the mesh: the NAD stays, and an Event on it, in the namespace (not in default), names the pod")
		setNamespaceLabels(ctx, ns, map[string]string{"istio-injection": "-"})
		Eventually(func() []string {
			return eventMessages(ctx, ns, "NetworkAttachmentDefinition", "istio-cni", controllers.ReasonNADKept)
		}).
			WithTimeout(converge).Should(ContainElement(ContainSubstring("pod web-app references it")))
		Consistently(nadExists).WithArguments(ctx, ns).WithTimeout(3 * time.Second).Should(BeTrue())
		Expect(eventMessages(ctx, "default", "Namespace", ns, controllers.ReasonNADKept)).To(BeEmpty())

		By("the pod finishes: the next look (every 5 times --nad-cleanup-delay, 10 s here) deletes the NAD")
		pod.Status.Phase = corev1.PodSucceeded
		Expect(adminClient.Status().Update(ctx, pod)).To(Succeed())
		Eventually(nadExists).WithArguments(ctx, ns).WithTimeout(converge).Should(BeFalse())
	})

	It("restores its own NAD when it is edited or deleted", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		Eventually(nadExists).WithArguments(ctx, ns).WithTimeout(converge).Should(BeTrue())
		nad := &nadv1.NetworkAttachmentDefinition{}
		Expect(adminClient.Get(ctx, nadKey(ns), nad)).To(Succeed())
		nad.Spec.Config = `{"cniVersion":"0.3.1","type":"bridge"}`
		Expect(adminClient.Update(ctx, nad)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(adminClient.Get(ctx, nadKey(ns), nad)).To(Succeed())
			g.Expect(nad.Spec.Config).To(BeEmpty())
		}).WithContext(ctx).WithTimeout(converge).Should(Succeed())
		Eventually(eventReasons).WithArguments(ctx, ns, "NetworkAttachmentDefinition", "istio-cni").Should(ContainElement(controllers.ReasonNADRestored))

		Expect(adminClient.Delete(ctx, nad)).To(Succeed())
		Eventually(func(g Gomega) {
			again := &nadv1.NetworkAttachmentDefinition{}
			g.Expect(adminClient.Get(ctx, nadKey(ns), again)).To(Succeed())
			g.Expect(again.UID).NotTo(Equal(nad.UID))
		}).WithContext(ctx).WithTimeout(converge).Should(Succeed())
	})

	It("never modifies or deletes a NAD of that name it did not create", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		mine := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Name: controllers.DefaultNADName, Namespace: ns},
			Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: `{"cniVersion":"0.3.1","name":"istio-cni","type":"istio-cni"}`}}
		Expect(adminClient.Create(ctx, mine)).To(Succeed())
		nsObj := &corev1.Namespace{}
		Expect(adminClient.Get(ctx, client.ObjectKey{Name: ns}, nsObj)).To(Succeed())
		nsObj.Labels["istio-injection"] = "enabled"
		Expect(adminClient.Update(ctx, nsObj)).To(Succeed())

		same := func(g Gomega) {
			got := &nadv1.NetworkAttachmentDefinition{}
			g.Expect(adminClient.Get(ctx, nadKey(ns), got)).To(Succeed())
			g.Expect(got.UID).To(Equal(mine.UID))
			g.Expect(got.ResourceVersion).To(Equal(mine.ResourceVersion))
		}
		Consistently(same).WithContext(ctx).WithTimeout(3 * time.Second).Should(Succeed())
		delete(nsObj.Labels, "istio-injection")
		Expect(adminClient.Update(ctx, nsObj)).To(Succeed())
		Consistently(same).WithContext(ctx).WithTimeout(3 * time.Second).Should(Succeed())
	})

	It("warns on a NAD of that name it did not create that runs another CNI plugin, and counts the namespace in a metric the tenant cannot delete", func(ctx SpecContext) {
		foreignNADs := func() (float64, error) { return metricValue("virtmesh_namespaces_foreign_nad") }
		found := func() (float64, error) { return metricValue("virtmesh_foreign_nads_found_total") }
		before, err := foreignNADs()
		Expect(err).NotTo(HaveOccurred())
		foundBefore, err := found()
		Expect(err).NotTo(HaveOccurred())
		ns := newNamespace(ctx)
		tenant := tenantIn(ctx, ns) // a namespace editor may write NADs
		bridge := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Name: controllers.DefaultNADName, Namespace: ns},
			Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: `{"cniVersion":"0.3.1","name":"istio-cni","type":"bridge","bridge":"br0"}`}}
		Expect(tenant.Create(ctx, bridge)).To(Succeed())
		setNamespaceLabels(ctx, ns, enabledNS)
		Eventually(func() []string {
			return eventMessages(ctx, ns, "NetworkAttachmentDefinition", controllers.DefaultNADName, controllers.ReasonNADNotIstioCNI)
		}).WithTimeout(converge).Should(ContainElement(ContainSubstring(`runs the CNI plugin "bridge"`)))
		Eventually(foreignNADs).WithTimeout(converge).Should(Equal(before + 1))
		Expect(found()).To(Equal(foundBefore + 1))
		got := &nadv1.NetworkAttachmentDefinition{}
		Expect(adminClient.Get(ctx, nadKey(ns), got)).To(Succeed())
		Expect(got.ResourceVersion).To(Equal(bridge.ResourceVersion), "the tenant's NAD is never touched")

		By("the tenant deletes it: virtmesh creates its own, and the namespace is no longer counted")
		Expect(tenant.Delete(ctx, bridge)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(adminClient.Get(ctx, nadKey(ns), got)).To(Succeed())
			g.Expect(got.Labels).To(HaveKeyWithValue(mesh.ManagedByLabel, mesh.ManagedByValue))
		}).WithTimeout(converge).Should(Succeed())
		Eventually(foreignNADs).WithTimeout(converge).Should(Equal(before))
		Expect(found()).To(Equal(foundBefore+1), "the counter keeps that one was found")
	})

	It("creates the NAD for a VMI that opts in by itself, and removes it when the VMI goes", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		vmi := testkit.PlainVMI("opted-in")
		vmi.Labels = map[string]string{mesh.InjectKey: "true"}
		createIn(ctx, ns, vmi)
		Eventually(nadExists).WithArguments(ctx, ns).WithTimeout(converge).Should(BeTrue())
		Expect(adminClient.Delete(ctx, vmi)).To(Succeed())
		Eventually(nadExists).WithArguments(ctx, ns).WithTimeout(converge).Should(BeFalse())
	})

	It("does nothing in a terminating namespace", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		Eventually(nadExists).WithArguments(ctx, ns).WithTimeout(converge).Should(BeTrue())
		// The namespace controller empties the namespace; virtmesh must not
		// fight it by recreating the NAD.
		Expect(adminClient.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(adminClient.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}))
		}).WithTimeout(converge).Should(BeTrue())
	})
})

var _ = Describe("The NetworkAttachmentDefinition controller without the NAD CRD", Ordered, func() {
	It("waits for the CRD and creates NADs once it is installed, without a restart", func(ctx SpecContext) {
		crdKey := client.ObjectKey{Name: controllers.NADCRDName}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		Expect(adminClient.Get(ctx, crdKey, crd)).To(Succeed())

		By("stopping virtmesh and removing the CRD")
		Expect(mgr.stop(ctx)).To(Succeed())
		Expect(adminClient.Delete(ctx, crd)).To(Succeed())
		Eventually(func() bool { return apierrors.IsNotFound(adminClient.Get(ctx, crdKey, crd)) }).WithTimeout(converge).Should(BeTrue())

		By("starting virtmesh on a cluster without Multus")
		mgr = startManager(managerConfig())
		ns := newLabelledNamespace(ctx, enabledNS)
		// The manager runs normally: the webhook still mutates VMIs.
		virt, _ := vmOwner()
		created, err := virt.KubevirtV1().VirtualMachineInstances(ns).Create(ctx, testkit.PlainVMI("early"), metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(created.Labels).To(HaveKeyWithValue(mesh.InjectKey, "true"))
		Consistently(mgr.probe).WithArguments("/readyz").WithTimeout(2 * time.Second).Should(Equal(http.StatusOK))

		By("installing the CRD")
		raw, err := os.ReadFile(filepath.Join(repoRoot, "tests", "crds", "k8s.cni.cncf.io_network-attachment-definitions.yaml"))
		Expect(err).NotTo(HaveOccurred())
		fresh := &apiextensionsv1.CustomResourceDefinition{}
		Expect(yaml.Unmarshal(raw, fresh)).To(Succeed())
		Expect(adminClient.Create(ctx, fresh)).To(Succeed())
		Eventually(func() error {
			_, err := adminClient.RESTMapper().RESTMapping(nadv1.SchemeGroupVersion.WithKind("NetworkAttachmentDefinition").GroupKind(), "v1")
			if err == nil {
				_, err = nadExists(ctx, ns)
			}
			return err
		}).WithTimeout(converge).Should(Succeed())
		Eventually(nadExists).WithArguments(ctx, ns).WithTimeout(converge).Should(BeTrue())
	}, SpecTimeout(2*time.Minute))
})
