package integration

import (
	"encoding/json"
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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

var _ = Describe("Upgrading from a virtmesh that wrote Services with Create and Update", func() {
	It("moves the old fields to server-side apply, so a port virtmesh no longer applies is removed", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		vm := testkit.MeshVM("legacy-app", "", "", 8080, 9999)
		createIn(ctx, ns, vm)
		applied := []string{string(metav1.ManagedFieldsOperationApply)}
		Eventually(getService(ctx, ns, "legacy-app")).WithTimeout(converge).Should(And(
			WithTransform(servicePorts, Equal([]int32{8080, 9999})),
			WithTransform(virtmeshOperations, Equal(applied)),
		))
		svc, err := getService(ctx, ns, "legacy-app")()
		Expect(err).NotTo(HaveOccurred())

		By("turning virtmesh's fields into what a version before server-side apply left: an Update entry")
		var patch []map[string]any
		for i, e := range svc.ManagedFields {
			if e.Manager == controllers.FieldOwner {
				patch = append(patch, map[string]any{"op": "replace", "path": fmt.Sprintf("/metadata/managedFields/%d/operation", i),
					"value": string(metav1.ManagedFieldsOperationUpdate)})
			}
		}
		raw, err := json.Marshal(patch)
		Expect(err).NotTo(HaveOccurred())
		Expect(adminClient.Patch(ctx, svc, client.RawPatch(types.JSONPatchType, raw))).To(Succeed())
		Expect(virtmeshOperations(svc)).To(Equal([]string{string(metav1.ManagedFieldsOperationUpdate)}))

		By("dropping port 9999 from the VM: virtmesh migrates, then removes it from the Service")
		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(vm), vm)).To(Succeed())
		vm.Spec.Template.Spec.Domain.Devices.Interfaces[0].Ports = []kubevirtv1.Port{{Name: "http-8080", Port: 8080}}
		Expect(adminClient.Update(ctx, vm)).To(Succeed())
		Eventually(getService(ctx, ns, "legacy-app")).WithTimeout(converge).Should(And(
			WithTransform(servicePorts, Equal([]int32{8080})),
			WithTransform(virtmeshOperations, Equal(applied)),
			HaveField("UID", Equal(svc.UID)),
		))
	})
})
