package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/virtmesh/virtmesh/controllers"
	"github.com/virtmesh/virtmesh/internal/app"
	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

const converge = 30 * time.Second

var enabledNS = map[string]string{"istio-injection": "enabled"}

func createIn(ctx context.Context, ns string, obj client.Object) {
	GinkgoHelper()
	obj.SetNamespace(ns)
	Expect(adminClient.Create(ctx, obj)).To(Succeed())
}

func nadKey(ns string) client.ObjectKey {
	return client.ObjectKey{Namespace: ns, Name: controllers.DefaultNADName}
}

// nadExists reports whether a NAD of the default name exists in ns.
func nadExists(ctx context.Context, ns string) (bool, error) {
	err := adminClient.Get(ctx, nadKey(ns), &nadv1.NetworkAttachmentDefinition{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

func getService(ctx context.Context, ns, name string) func() (*corev1.Service, error) {
	return func() (*corev1.Service, error) {
		svc := &corev1.Service{}
		err := adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, svc)
		return svc, err
	}
}

func servicePorts(svc *corev1.Service) []int32 {
	var out []int32
	for _, p := range svc.Spec.Ports {
		out = append(out, p.Port)
	}
	return out
}

func ownerNames(obj client.Object) []string {
	var out []string
	for _, o := range obj.GetOwnerReferences() {
		out = append(out, o.Kind+"/"+o.Name)
	}
	return out
}

// eventReasons lists the reasons of the events about an object.
func eventReasons(ctx context.Context, ns, kind, name string) ([]string, error) {
	events := &corev1.EventList{}
	if err := adminClient.List(ctx, events, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var out []string
	for _, e := range events.Items {
		if e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name {
			out = append(out, e.Reason)
		}
	}
	return out, nil
}

func eventMessages(ctx context.Context, ns, kind, name, reason string) []string {
	GinkgoHelper()
	events := &corev1.EventList{}
	Expect(adminClient.List(ctx, events, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, e := range events.Items {
		if e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name && e.Reason == reason {
			out = append(out, e.Message)
		}
	}
	return out
}

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
		Eventually(eventReasons).WithArguments(ctx, "default", "Namespace", ns).Should(ContainElement(controllers.ReasonNADCreated))

		delete(nsObj.Labels, "istio-injection")
		Expect(adminClient.Update(ctx, nsObj)).To(Succeed())
		Eventually(nadExists).WithArguments(ctx, ns).WithTimeout(converge).Should(BeFalse())
		Eventually(eventReasons).WithArguments(ctx, "default", "Namespace", ns).Should(ContainElement(controllers.ReasonNADDeleted))
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

var _ = Describe("The Service controller", func() {
	It("creates a Service for a meshed VM and updates it when its ports change", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		vm := testkit.MeshVM("shop", "", "", 8080)
		createIn(ctx, ns, vm)

		Eventually(getService(ctx, ns, "shop")).WithTimeout(converge).Should(And(
			WithTransform(servicePorts, Equal([]int32{8080})),
			WithTransform(ownerNames, Equal([]string{"VirtualMachine/shop"})),
			HaveField("Spec.Selector", Equal(map[string]string{"app": "shop"})),
			HaveField("Labels", HaveKeyWithValue(mesh.ManagedByLabel, mesh.ManagedByValue)),
		))
		svc, _ := getService(ctx, ns, "shop")()
		Expect(svc.Spec.Ports[0].Name).To(Equal("http-8080"))
		Expect(svc.Spec.Ports[0].AppProtocol).To(HaveValue(Equal("http")))
		Expect(svc.OwnerReferences[0].UID).To(Equal(vm.UID))
		Expect(svc.OwnerReferences[0].Controller).To(BeNil())
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "shop").Should(ContainElement(controllers.ReasonServiceCreated))

		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(vm), vm)).To(Succeed())
		iface := &vm.Spec.Template.Spec.Domain.Devices.Interfaces[0]
		iface.Ports = append(iface.Ports, kubevirtv1.Port{Name: "grpc", Port: 9090})
		Expect(adminClient.Update(ctx, vm)).To(Succeed())
		Eventually(getService(ctx, ns, "shop")).WithTimeout(converge).Should(WithTransform(servicePorts, Equal([]int32{8080, 9090})))
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "shop").Should(ContainElement(controllers.ReasonServiceUpdated))
	})

	It("shares one Service between the VMs of an app; garbage collection deletes it after the last one", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		v1 := testkit.MeshVM("reviews-v1", "reviews", "v1", 8080)
		v2 := testkit.MeshVM("reviews-v2", "reviews", "v2", 8080, 8443)
		createIn(ctx, ns, v1)
		createIn(ctx, ns, v2)
		Eventually(getService(ctx, ns, "reviews")).WithTimeout(converge).Should(And(
			WithTransform(servicePorts, Equal([]int32{8080, 8443})),
			WithTransform(ownerNames, ConsistOf("VirtualMachine/reviews-v1", "VirtualMachine/reviews-v2")),
		))

		By("deleting v2: its owner reference and its port leave the Service")
		Expect(adminClient.Delete(ctx, v2)).To(Succeed())
		Eventually(getService(ctx, ns, "reviews")).WithTimeout(converge).Should(And(
			WithTransform(servicePorts, Equal([]int32{8080})),
			WithTransform(ownerNames, Equal([]string{"VirtualMachine/reviews-v1"})),
		))

		By("deleting v1: the garbage collector deletes the Service")
		Expect(adminClient.Delete(ctx, v1)).To(Succeed())
		Eventually(func() bool {
			_, err := getService(ctx, ns, "reviews")()
			return apierrors.IsNotFound(err)
		}).WithTimeout(converge).Should(BeTrue())
	})

	It("serves a standalone VMI, as the webhook labelled it", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		virt, _ := vmOwner()
		vmi, err := virt.KubevirtV1().VirtualMachineInstances(ns).Create(ctx, testkit.PlainVMI("cache"), metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(getService(ctx, ns, "cache")).WithTimeout(converge).Should(And(
			WithTransform(servicePorts, Equal([]int32{8080})),
			WithTransform(ownerNames, Equal([]string{"VirtualMachineInstance/cache"})),
		))
		svc, _ := getService(ctx, ns, "cache")()
		Expect(svc.OwnerReferences[0].UID).To(Equal(vmi.UID))
	})

	It("leaves a Service it did not create alone and tells the VM owner", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		theirs := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "legacy", Namespace: ns},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"tier": "old"}, Ports: []corev1.ServicePort{{Port: 80}}}}
		Expect(adminClient.Create(ctx, theirs)).To(Succeed())
		createIn(ctx, ns, testkit.MeshVM("legacy", "", "", 8080))
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "legacy").WithTimeout(converge).
			Should(ContainElement(controllers.ReasonServiceConflict))
		Expect(eventMessages(ctx, ns, "VirtualMachine", "legacy", controllers.ReasonServiceConflict)[0]).To(ContainSubstring("did not create it"))
		got, _ := getService(ctx, ns, "legacy")()
		Expect(got.ResourceVersion).To(Equal(theirs.ResourceVersion))
		Expect(got.OwnerReferences).To(BeEmpty())
	})

	It("creates no Service for a VM without ports, and says how to declare them", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		createIn(ctx, ns, testkit.MeshVM("quiet", "", ""))
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "quiet").WithTimeout(converge).Should(ContainElement(controllers.ReasonNoPorts))
		Expect(eventMessages(ctx, ns, "VirtualMachine", "quiet", controllers.ReasonNoPorts)[0]).To(ContainSubstring("interfaces[].ports"))
		_, err := getService(ctx, ns, "quiet")()
		Expect(apierrors.IsNotFound(err)).To(BeTrue())
	})

	It("creates no Service for a VM annotated virtmesh.io/service=false, and deletes its own when a VM opts out", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		out := testkit.MeshVM("private", "", "", 8080)
		out.Annotations = map[string]string{mesh.ServiceAnnotation: "false"}
		createIn(ctx, ns, out)
		in := testkit.MeshVM("public", "", "", 8080)
		createIn(ctx, ns, in)
		Eventually(getService(ctx, ns, "public")).WithTimeout(converge).Should(WithTransform(servicePorts, Equal([]int32{8080})))
		_, err := getService(ctx, ns, "private")()
		Expect(apierrors.IsNotFound(err)).To(BeTrue())

		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(in), in)).To(Succeed())
		in.Annotations = map[string]string{mesh.ServiceAnnotation: "false"}
		Expect(adminClient.Update(ctx, in)).To(Succeed())
		Eventually(func() bool {
			_, err := getService(ctx, ns, "public")()
			return apierrors.IsNotFound(err)
		}).WithTimeout(converge).Should(BeTrue())
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "public").Should(ContainElement(controllers.ReasonServiceDeleted))
	})
})

var _ = Describe("The controllers at steady state", Ordered, func() {
	It("make zero API writes across full resyncs", func(ctx SpecContext) {
		By("restarting virtmesh with a 2s resync period, counting its write requests")
		Expect(mgr.stop(ctx)).To(Succeed())
		writes := &writeCounter{}
		mgr = startManager(writes.wrap(managerConfig()), func(o *app.Options) { o.Controllers.SyncPeriod = 2 * time.Second })

		ns := newLabelledNamespace(ctx, enabledNS)
		createIn(ctx, ns, testkit.MeshVM("web-v1", "web", "v1", 8080))
		createIn(ctx, ns, testkit.MeshVM("web-v2", "web", "v2", 8080, 9090))
		createIn(ctx, ns, testkit.MeshVM("db", "", "", 5432))
		Eventually(getService(ctx, ns, "web")).WithTimeout(converge).Should(WithTransform(servicePorts, Equal([]int32{8080, 9090})))
		Eventually(getService(ctx, ns, "db")).WithTimeout(converge).Should(WithTransform(servicePorts, Equal([]int32{5432})))
		Eventually(nadExists).WithArguments(ctx, ns).WithTimeout(converge).Should(BeTrue())

		snapshot := func() map[string]string {
			GinkgoHelper()
			out := map[string]string{}
			for _, l := range []client.ObjectList{&corev1.ServiceList{}, &nadv1.NetworkAttachmentDefinitionList{},
				&kubevirtv1.VirtualMachineList{}, &corev1.EventList{}} {
				Expect(adminClient.List(ctx, l, client.InNamespace(ns))).To(Succeed())
				Expect(meta.EachListItem(l, func(o runtime.Object) error {
					m := o.(client.Object)
					out[fmt.Sprintf("%T/%s/%s", o, m.GetName(), m.GetUID())] = m.GetResourceVersion()
					return nil
				})).To(Succeed())
			}
			return out
		}
		// Let the creation settle, then watch two full resyncs go by.
		time.Sleep(3 * time.Second)
		before, reconcilesBefore, writesBefore := snapshot(), reconciles("service")+reconciles("nad"), writes.snapshot()
		Expect(writesBefore).To(HaveKey(ContainSubstring("PATCH /api/v1/namespaces/"+ns+"/services/")),
			"the counter saw none of virtmesh's applies: it counts nothing")
		time.Sleep(7 * time.Second)
		after, reconcilesAfter, writesAfter := snapshot(), reconciles("service")+reconciles("nad"), writes.snapshot()
		Expect(reconcilesAfter-reconcilesBefore).To(BeNumerically(">=", 4), "no resync happened")
		Expect(writesAfter).To(Equal(writesBefore), "virtmesh sent write requests at steady state")
		Expect(after).To(Equal(before))
	}, SpecTimeout(2*time.Minute))

	It("converge after a restart mid-way with no duplicates", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		By("creating VMs, and stopping virtmesh while it works on them")
		vms := map[string]types.UID{}
		for i := range 12 {
			app := "app-" + strconv.Itoa(i%4)
			vm := testkit.MeshVM(app+"-v"+strconv.Itoa(i), app, "v"+strconv.Itoa(i), int32(8000+i))
			createIn(ctx, ns, vm)
			vms[vm.Name] = vm.UID
		}
		Expect(mgr.stop(ctx)).To(Succeed())
		mgr = startManager(managerConfig())

		for a := range 4 {
			app := "app-" + strconv.Itoa(a)
			Eventually(getService(ctx, ns, app)).WithTimeout(converge).Should(And(
				WithTransform(servicePorts, ConsistOf(int32(8000+a), int32(8004+a), int32(8008+a))),
				WithTransform(ownerNames, ConsistOf("VirtualMachine/"+app+"-v"+strconv.Itoa(a),
					"VirtualMachine/"+app+"-v"+strconv.Itoa(a+4), "VirtualMachine/"+app+"-v"+strconv.Itoa(a+8))),
			))
		}
		svcs := &corev1.ServiceList{}
		Expect(adminClient.List(ctx, svcs, client.InNamespace(ns))).To(Succeed())
		Expect(svcs.Items).To(HaveLen(4))
		nads := &nadv1.NetworkAttachmentDefinitionList{}
		Expect(adminClient.List(ctx, nads, client.InNamespace(ns))).To(Succeed())
		Expect(nads.Items).To(HaveLen(1))
	}, SpecTimeout(2*time.Minute))

	It("reports the meshed VMs as a gauge", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		createIn(ctx, ns, testkit.MeshVM("counted-1", "", "", 8080))
		createIn(ctx, ns, testkit.MeshVM("counted-2", "", "", 8080))
		virt, _ := vmOwner()
		_, err := virt.KubevirtV1().VirtualMachineInstances(ns).Create(ctx, testkit.PlainVMI("counted"), metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() (float64, error) { return metricValue("virtmesh_meshed_virtualmachines") }).
			WithTimeout(converge).Should(BeNumerically(">=", 2))
		Eventually(func() (float64, error) { return metricValue("virtmesh_meshed_vmis") }).
			WithTimeout(converge).Should(BeNumerically(">=", 1))
	})
})

var metricLine = regexp.MustCompile(`(?m)^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$`)

// scrape returns the manager's metrics in the text format.
func scrape() (string, error) {
	resp, err := http.Get("http://" + mgr.opts.MetricsBindAddress + "/metrics")
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// metricValue sums every series of a metric.
func metricValue(name string) (float64, error) {
	text, err := scrape()
	if err != nil {
		return 0, err
	}
	sum := 0.0
	for _, m := range metricLine.FindAllStringSubmatch(text, -1) {
		if m[1] == name {
			v, _ := strconv.ParseFloat(m[3], 64)
			sum += v
		}
	}
	return sum, nil
}

// reconciles is how many reconciles a controller has finished.
func reconciles(controller string) float64 {
	GinkgoHelper()
	text, err := scrape()
	Expect(err).NotTo(HaveOccurred())
	sum := 0.0
	for _, m := range metricLine.FindAllStringSubmatch(text, -1) {
		if m[1] == "controller_runtime_reconcile_total" && regexp.MustCompile(`controller="`+controller+`"`).MatchString(m[2]) {
			v, _ := strconv.ParseFloat(m[3], 64)
			sum += v
		}
	}
	return sum
}
