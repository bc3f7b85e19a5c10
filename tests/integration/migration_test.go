package integration

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/controllers"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

// virtmeshOperations lists the operations of virtmesh's managedFields entries.
func virtmeshOperations(s *corev1.Service) []string {
	var ops []string
	for _, e := range s.ManagedFields {
		if e.Manager == controllers.FieldOwner {
			ops = append(ops, string(e.Operation))
		}
	}
	return ops
}

var _ = Describe("A Service virtmesh created, or an older virtmesh wrote with Create and Update", func() {
	It("keeps it under the create's entry while it is as wanted, and moves it to server-side apply before a change, so a port virtmesh no longer applies is removed", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		vm := testkit.MeshVM("legacy-app", "", "", 8080, 9999)
		createIn(ctx, ns, vm)
		created := []string{string(metav1.ManagedFieldsOperationUpdate)}
		Eventually(getService(ctx, ns, "legacy-app")).WithTimeout(converge).Should(And(
			WithTransform(servicePorts, Equal([]int32{8080, 9999})),
			WithTransform(virtmeshOperations, Equal(created)),
		))
		svc, err := getService(ctx, ns, "legacy-app")()
		Expect(err).NotTo(HaveOccurred())
		By("leaving a Service that is as wanted unwritten: the create was its only write")
		Consistently(getService(ctx, ns, "legacy-app")).WithTimeout(3 * time.Second).Should(HaveField("ResourceVersion", svc.ResourceVersion))

		By("dropping port 9999 from the VM: virtmesh migrates, then removes it from the Service")
		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(vm), vm)).To(Succeed())
		vm.Spec.Template.Spec.Domain.Devices.Interfaces[0].Ports = []kubevirtv1.Port{{Name: "http-8080", Port: 8080}}
		Expect(adminClient.Update(ctx, vm)).To(Succeed())
		Eventually(getService(ctx, ns, "legacy-app")).WithTimeout(converge).Should(And(
			WithTransform(servicePorts, Equal([]int32{8080})),
			WithTransform(virtmeshOperations, Equal([]string{string(metav1.ManagedFieldsOperationApply)})),
			HaveField("UID", Equal(svc.UID)),
		))
	})
})
