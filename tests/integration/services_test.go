package integration

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/controllers"
	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

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
	It("keeps a VM's Service while its running VMI is still in the mesh after the namespace left it (same ClusterIP); deletes it once that VMI is gone", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		vmi := vmWithVMI(ctx, ns, "web", testkit.VMISpec(8080))
		Expect(vmi.Labels).To(HaveKeyWithValue(mesh.InjectKey, "true"), "the webhook meshed it")
		startOn(ctx, vmi, "node01", proxyIsReady)
		Eventually(getService(ctx, ns, "web")).WithTimeout(converge).Should(Not(BeNil()))
		svc, err := getService(ctx, ns, "web")()
		Expect(err).NotTo(HaveOccurred())

		By("the namespace leaves the mesh (the first step of a relabelling, say): the running VM keeps its proxy, and Istio injects its migrations by the VMI's labels")
		setNamespaceLabels(ctx, ns, map[string]string{"istio-injection": "-"})
		Eventually(statusOf(ctx, ns, "web")).WithTimeout(converge).Should(inState(mesh.Meshed))
		Consistently(getService(ctx, ns, "web")).WithTimeout(5 * time.Second).Should(And(
			HaveField("UID", svc.UID), HaveField("Spec.ClusterIP", svc.Spec.ClusterIP)))

		By("the VM stops: its next VMI would be outside the mesh")
		Expect(adminClient.Delete(ctx, vmi)).To(Succeed())
		Eventually(func() bool {
			_, err := getService(ctx, ns, "web")()
			return apierrors.IsNotFound(err)
		}).WithTimeout(converge).Should(BeTrue())
	})
})
