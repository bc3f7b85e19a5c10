package integration

import (
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/manifests"
)

var _ = Describe("The shipped manifests", func() {
	It("the default overlay is accepted by the API server, object by object (dry run)", func(ctx SpecContext) {
		objs, err := manifests.Render(filepath.Join(repoRoot, "manifests", "default"))
		Expect(err).NotTo(HaveOccurred())
		var kinds []string
		for _, o := range objs {
			kinds = append(kinds, o.GetKind())
		}
		Expect(kinds).To(ContainElements("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
			"Deployment", "Service", "Secret", "PodDisruptionBudget", "NetworkPolicy", "MutatingWebhookConfiguration"))
		// dryRun=All runs defaulting, validation and admission for every
		// object and stores nothing. Objects the suite already installed
		// (namespace, RBAC, the webhook configuration pointed at this machine)
		// are replaced as a whole, as on a fresh cluster; the rest created.
		for _, obj := range objs {
			existing := &unstructured.Unstructured{}
			existing.SetGroupVersionKind(obj.GroupVersionKind())
			err := adminClient.Get(ctx, client.ObjectKeyFromObject(obj), existing)
			switch {
			case apierrors.IsNotFound(err):
				Expect(adminClient.Create(ctx, obj.DeepCopy(), client.DryRunAll)).To(Succeed(), "%s %s", obj.GetKind(), obj.GetName())
			case err == nil:
				o := obj.DeepCopy()
				o.SetResourceVersion(existing.GetResourceVersion())
				Expect(adminClient.Update(ctx, o, client.DryRunAll)).To(Succeed(), "%s %s", obj.GetKind(), obj.GetName())
			default:
				Expect(err).NotTo(HaveOccurred())
			}
		}
	})
})
