package integration

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/controllers"
	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

var _ = Describe("Service ownership (hostile tenants)", func() {
	It("never touches or deletes a Service that merely carries virtmesh's label", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		theirs := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns,
			Labels: map[string]string{mesh.ManagedByLabel: mesh.ManagedByValue}},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"team": "b"}, Ports: []corev1.ServicePort{{Name: "tcp-5432", Port: 5432}}}}
		Expect(adminClient.Create(ctx, theirs, client.FieldOwner("team-b"))).To(Succeed())
		vm := testkit.MeshVM("web", "", "", 8080)
		createIn(ctx, ns, vm)
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "web").WithTimeout(converge).
			Should(ContainElement(controllers.ReasonServiceConflict))

		By("deleting the VM: their Service stays as it was")
		Expect(adminClient.Delete(ctx, vm)).To(Succeed())
		Consistently(getService(ctx, ns, "web")).WithTimeout(5 * time.Second).Should(HaveField("ResourceVersion", theirs.ResourceVersion))
	})

	It("stops managing a Service someone else changed, without reverting it, and the garbage collector keeps it", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		vm := testkit.MeshVM("shop", "", "", 8080)
		createIn(ctx, ns, vm)
		Eventually(getService(ctx, ns, "shop")).WithTimeout(converge).Should(WithTransform(ownerNames, Equal([]string{"VirtualMachine/shop"})))

		By("another team re-points the Service with kubectl (an update that keeps virtmesh's label)")
		Eventually(func() error {
			svc, err := getService(ctx, ns, "shop")()
			if err != nil {
				return err
			}
			svc.Spec.Selector = map[string]string{mesh.AppLabel: "shop-v2"}
			return adminClient.Update(ctx, svc, client.FieldOwner("kubectl-edit"))
		}).WithTimeout(converge).Should(Succeed())

		Eventually(getService(ctx, ns, "shop")).WithTimeout(converge).Should(And(
			HaveField("Labels", Not(HaveKey(mesh.ManagedByLabel))),
			HaveField("OwnerReferences", BeEmpty()),
			HaveField("Spec.Selector", Equal(map[string]string{mesh.AppLabel: "shop-v2"})),
		))
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "shop").Should(ContainElement(controllers.ReasonServiceReleased))

		By("deleting the VM: the Service is theirs now and stays")
		Expect(adminClient.Delete(ctx, vm)).To(Succeed())
		Consistently(func() error {
			_, err := getService(ctx, ns, "shop")()
			return err
		}).WithTimeout(5 * time.Second).Should(Succeed())
		_, err := getService(ctx, ns, "shop")()
		Expect(apierrors.IsNotFound(err)).To(BeFalse())
	})

	It("lets go of a Service adopted by relabelling it (managed-by=Helm), so the garbage collector keeps it", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		vm := testkit.MeshVM("adopted", "", "", 8080)
		createIn(ctx, ns, vm)
		Eventually(getService(ctx, ns, "adopted")).WithTimeout(converge).Should(WithTransform(ownerNames, Equal([]string{"VirtualMachine/adopted"})))
		Eventually(func() error {
			svc, err := getService(ctx, ns, "adopted")()
			if err != nil {
				return err
			}
			svc.Labels[mesh.ManagedByLabel] = "Helm"
			return adminClient.Update(ctx, svc, client.FieldOwner("helm"))
		}).WithTimeout(converge).Should(Succeed())
		Eventually(getService(ctx, ns, "adopted")).WithTimeout(converge).Should(And(
			HaveField("Labels", HaveKeyWithValue(mesh.ManagedByLabel, "Helm")),
			HaveField("OwnerReferences", BeEmpty()),
		))
		Expect(adminClient.Delete(ctx, vm)).To(Succeed())
		Consistently(func() error {
			_, err := getService(ctx, ns, "adopted")()
			return err
		}).WithTimeout(5 * time.Second).Should(Succeed())
	})
})
