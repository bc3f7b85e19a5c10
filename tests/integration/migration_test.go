package integration

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/controllers"
	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

var _ = Describe("Upgrading from a virtmesh that wrote Services with Create and Update", func() {
	It("moves the old fields to server-side apply, so a port virtmesh no longer applies is removed", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		vm := testkit.MeshVM("legacy-app", "", "", 8080)
		createIn(ctx, ns, vm)
		// What an earlier virtmesh left: its Service, written by Create under
		// the field manager "virtmesh", with a port the VM has since dropped.
		old := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "legacy-app", Namespace: ns,
				Labels: map[string]string{mesh.ManagedByLabel: mesh.ManagedByValue},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: kubevirtv1.SchemeGroupVersion.String(),
					Kind: "VirtualMachine", Name: vm.Name, UID: vm.UID}}},
			Spec: corev1.ServiceSpec{Selector: map[string]string{mesh.AppLabel: "legacy-app"}, Ports: []corev1.ServicePort{
				{Name: "http-8080", Port: 8080, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)},
				{Name: "port-9999", Port: 9999, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(9999)},
			}},
		}
		Expect(adminClient.Create(ctx, old, client.FieldOwner(controllers.FieldOwner))).To(Succeed())

		Eventually(getService(ctx, ns, "legacy-app")).WithTimeout(converge).Should(And(
			WithTransform(servicePorts, Equal([]int32{8080})),
			WithTransform(func(s *corev1.Service) []string {
				var ops []string
				for _, e := range s.ManagedFields {
					if e.Manager == controllers.FieldOwner {
						ops = append(ops, string(e.Operation))
					}
				}
				return ops
			}, Equal([]string{string(metav1.ManagedFieldsOperationApply)})),
		))
	})
})
