package integration

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/virtmesh/virtmesh/controllers"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

// injectors holds real Istio and Maistra injector configurations (helm
// template output), with the NAD each one's pods reference in its README.
var injectors = filepath.Join(repoRoot, "tests", "testdata", "istio-injectors")

// installInjector installs a fixture's injector ConfigMap (unless withoutConfigMap)
// and MutatingWebhookConfiguration for the rest of the spec. Its webhooks
// point at an istiod that does not exist: nothing here creates pods.
func installInjector(ctx SpecContext, fixture string, withoutConfigMap bool) {
	GinkgoHelper()
	installInjectorWith(ctx, fixture, withoutConfigMap, nil)
}

// installStandInInjector installs Istio 1.30's injector for specs that
// create launcher pods in its namespaces: its webhooks fail open, since no
// istiod answers them here.
func installStandInInjector(ctx SpecContext) {
	GinkgoHelper()
	installInjectorWith(ctx, "istio-1.30-multus", false, func(mwc *admissionregistrationv1.MutatingWebhookConfiguration) {
		for i := range mwc.Webhooks {
			mwc.Webhooks[i].FailurePolicy = ptr.To(admissionregistrationv1.Ignore)
		}
	})
}

func installInjectorWith(ctx SpecContext, fixture string, withoutConfigMap bool, edit func(*admissionregistrationv1.MutatingWebhookConfiguration)) {
	GinkgoHelper()
	var objs []client.Object
	if !withoutConfigMap {
		cm := &corev1.ConfigMap{}
		raw, err := os.ReadFile(filepath.Join(injectors, fixture, "configmap.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(yaml.Unmarshal(raw, cm)).To(Succeed())
		objs = append(objs, cm)
	}
	raw, err := os.ReadFile(filepath.Join(injectors, fixture, "mutatingwebhookconfiguration.yaml"))
	Expect(err).NotTo(HaveOccurred())
	for _, doc := range strings.Split(string(raw), "\n---") {
		mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
		Expect(yaml.Unmarshal([]byte(doc), mwc)).To(Succeed())
		if mwc.Name != "" {
			if edit != nil {
				edit(mwc)
			}
			objs = append(objs, mwc)
		}
	}
	for _, o := range objs {
		Expect(adminClient.Create(ctx, o)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(adminClient.Delete(ctx, o))).To(Succeed()) })
	}
}

func nadNames(ctx SpecContext, ns string) func() ([]string, error) {
	return func() ([]string, error) {
		list := &nadv1.NetworkAttachmentDefinitionList{}
		if err := adminClient.List(ctx, list, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		var out []string
		for _, n := range list.Items {
			out = append(out, n.Name)
		}
		return out, nil
	}
}

var _ = Describe("--cni-nad=auto: the NAD the Istio injector really references", func() {
	It("Istio 1.30 with multus (shared default/istio-cni): creates none, reports it missing until it exists", func(ctx SpecContext) {
		installInjector(ctx, "istio-1.30-multus", false)
		ns := newLabelledNamespace(ctx, enabledNS)
		Consistently(nadNames(ctx, ns)).WithTimeout(3 * time.Second).Should(BeEmpty())
		Eventually(eventReasons).WithArguments(ctx, "default", "Namespace", ns).WithTimeout(converge).
			Should(ContainElement(controllers.ReasonSharedNADMissing))
		Eventually(func() (float64, error) { return metricValue("virtmesh_namespaces_missing_nad") }).WithTimeout(converge).Should(BeNumerically(">=", 1))

		By("istio-cni creating the shared NAD: the namespace is fine")
		shared := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Name: "istio-cni", Namespace: "default"}}
		Expect(adminClient.Create(ctx, shared)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(adminClient.Delete(ctx, shared))).To(Succeed()) })
		Eventually(func() (float64, error) { return metricValue("virtmesh_namespaces_missing_nad") }).WithTimeout(converge).Should(BeZero())
		Expect(nadNames(ctx, ns)()).To(BeEmpty())
	})

	It("Istio 1.18 with multus (per-namespace istio-cni): creates it", func(ctx SpecContext) {
		installInjector(ctx, "istio-1.18-multus", false)
		ns := newLabelledNamespace(ctx, enabledNS)
		Eventually(nadNames(ctx, ns)).WithTimeout(converge).Should(Equal([]string{"istio-cni"}))
	})

	It("Istio 1.30 chained: creates none and reports nothing", func(ctx SpecContext) {
		installInjector(ctx, "istio-1.30-chained", false)
		ns := newLabelledNamespace(ctx, enabledNS)
		Consistently(nadNames(ctx, ns)).WithTimeout(3 * time.Second).Should(BeEmpty())
		Expect(eventReasons(ctx, "default", "Namespace", ns)).NotTo(ContainElement(controllers.ReasonSharedNADMissing))
	})

	It("OpenShift Service Mesh 2: creates none; says so where a namespace is not a member", func(ctx SpecContext) {
		installInjector(ctx, "maistra-2.5", false)
		member := newLabelledNamespace(ctx, map[string]string{"istio-injection": "enabled", controllers.MaistraMemberLabel: "istio-system"})
		outsider := newLabelledNamespace(ctx, enabledNS)
		Consistently(nadNames(ctx, member)).WithTimeout(3 * time.Second).Should(BeEmpty())
		Expect(nadNames(ctx, outsider)()).To(BeEmpty())
		Eventually(eventReasons).WithArguments(ctx, "default", "Namespace", outsider).WithTimeout(converge).
			Should(ContainElement(controllers.ReasonNotMeshMember))
		Expect(eventReasons(ctx, "default", "Namespace", member)).NotTo(ContainElement(controllers.ReasonNotMeshMember))
	})

	It("an injector whose ConfigMap cannot be read (UNKNOWN): keeps a per-namespace NAD, as KubeVirt's guide says", func(ctx SpecContext) {
		installInjector(ctx, "istio-1.30-multus", true)
		ns := newLabelledNamespace(ctx, enabledNS)
		Eventually(nadNames(ctx, ns)).WithTimeout(converge).Should(Equal([]string{"istio-cni"}))
	})

	It("follows a revision switch, and deletes its own NAD where it is no longer needed", func(ctx SpecContext) {
		installInjector(ctx, "istio-1.18-multus", false)            // default revision: per-namespace istio-cni
		installInjector(ctx, "istio-1.30-multus-rev-canary", false) // canary: shared default/istio-cni
		ns := newLabelledNamespace(ctx, enabledNS)
		Eventually(nadNames(ctx, ns)).WithTimeout(converge).Should(Equal([]string{"istio-cni"}))

		By("moving the namespace to the canary revision")
		nsObj := &corev1.Namespace{}
		Expect(adminClient.Get(ctx, client.ObjectKey{Name: ns}, nsObj)).To(Succeed())
		delete(nsObj.Labels, "istio-injection")
		nsObj.Labels["istio.io/rev"] = "canary"
		Expect(adminClient.Update(ctx, nsObj)).To(Succeed())
		By("keeping it for --nad-cleanup-delay (2s here), then deleting it")
		Consistently(nadNames(ctx, ns)).WithTimeout(time.Second).Should(Equal([]string{"istio-cni"}))
		Eventually(nadNames(ctx, ns)).WithTimeout(converge).Should(BeEmpty())
		Eventually(eventReasons).WithArguments(ctx, ns, "NetworkAttachmentDefinition", "istio-cni").WithTimeout(converge).
			Should(ContainElement(controllers.ReasonNADDeleted))
	})

	It("reads injector ConfigMaps only where RBAC lets it (a cache it cannot fill would stop the manager)", func(ctx SpecContext) {
		readable, dropped, err := controllers.ReadableIstioNamespaces(ctx, managerConfig(), []string{"istio-system", "istio-elsewhere"})
		Expect(err).NotTo(HaveOccurred())
		Expect(readable).To(Equal([]string{"istio-system"}))
		Expect(dropped).To(ConsistOf(ContainSubstring(`"istio-elsewhere"`)))

		By("none readable (Istio not installed yet): no ConfigMap cache at all, not one for every namespace")
		readable, _, err = controllers.ReadableIstioNamespaces(ctx, managerConfig(), []string{"istio-elsewhere"})
		Expect(err).NotTo(HaveOccurred())
		cfg := controllers.DefaultConfig()
		cfg.IstioNamespaces, cfg.ReadableIstioNamespaces = []string{"istio-elsewhere"}, readable
		Expect(controllers.CacheByObject(cfg)).NotTo(HaveKey(BeAssignableToTypeOf(&corev1.ConfigMap{})))
	})

	It("follows a VM's own revision in a namespace without injection labels", func(ctx SpecContext) {
		installInjector(ctx, "istio-1.18-multus", false)            // default revision: per-namespace istio-cni
		installInjector(ctx, "istio-1.30-multus-rev-canary", false) // canary: shared default/istio-cni
		ns := newNamespace(ctx)
		canary := testkit.MeshVM("canary", "", "", 8080)
		canary.Spec.Template.ObjectMeta.Labels["istio.io/rev"] = "canary"
		createIn(ctx, ns, canary)
		Consistently(nadNames(ctx, ns)).WithTimeout(3 * time.Second).Should(BeEmpty())

		By("a VM of the default revision joining (inject=true): its per-namespace NAD appears")
		stable := testkit.MeshVM("stable", "", "", 8080)
		stable.Spec.Template.ObjectMeta.Labels["sidecar.istio.io/inject"] = "true"
		createIn(ctx, ns, stable)
		Eventually(nadNames(ctx, ns)).WithTimeout(converge).Should(Equal([]string{"istio-cni"}))
	})

	It("tells the owner of a VM with secondary networks that Istio 1.22's injector cannot start it", func(ctx SpecContext) {
		installInjector(ctx, "istio-1.22-multus", false) // 1.22.8: appends wrongly to a JSON-form networks annotation
		ns := newLabelledNamespace(ctx, enabledNS)
		plain := testkit.MeshVM("plain", "", "", 8080)
		createIn(ctx, ns, plain)
		multi := testkit.MeshVM("multi", "", "", 8080)
		spec := &multi.Spec.Template.Spec
		spec.Networks = append(spec.Networks, kubevirtv1.Network{Name: "storage",
			NetworkSource: kubevirtv1.NetworkSource{Multus: &kubevirtv1.MultusNetwork{NetworkName: "storage-net"}}})
		spec.Domain.Devices.Interfaces = append(spec.Domain.Devices.Interfaces, kubevirtv1.Interface{Name: "storage",
			InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}})
		createIn(ctx, ns, multi)
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "multi").WithTimeout(converge).
			Should(ContainElement(controllers.ReasonIstioNetworksBug))
		Expect(eventMessages(ctx, ns, "VirtualMachine", "multi", controllers.ReasonIstioNetworksBug)[0]).To(ContainSubstring("Istio 1.22.8"))
		Expect(eventReasons(ctx, ns, "VirtualMachine", "plain")).NotTo(ContainElement(controllers.ReasonIstioNetworksBug))

		By("and tells its creator at admission too")
		virt, warnings := vmOwner()
		vmi := testkit.PlainVMI("multi-vmi")
		vmi.Spec.Networks = append(vmi.Spec.Networks, spec.Networks[1])
		vmi.Spec.Domain.Devices.Interfaces = append(vmi.Spec.Domain.Devices.Interfaces, spec.Domain.Devices.Interfaces[1])
		_, err := virt.KubevirtV1().VirtualMachineInstances(ns).Create(ctx, vmi, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(warnings.All()).To(ContainElement(ContainSubstring("Istio 1.22.8's injector")))
	})
})
