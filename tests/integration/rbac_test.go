package integration

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"

	"github.com/virtmesh/virtmesh/internal/testkit/local"
)

// allowed asks the API server whether virtmesh's ServiceAccount, with the
// shipped RBAC, may do verb on the resource.
func allowed(ctx SpecContext, attrs authorizationv1.ResourceAttributes) bool {
	GinkgoHelper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               "system:serviceaccount:" + local.Namespace + ":" + local.ServiceAccount,
		Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + local.Namespace, "system:authenticated"},
		ResourceAttributes: &attrs,
	}}
	Expect(adminClient.Create(ctx, sar)).To(Succeed())
	return sar.Status.Allowed
}

var _ = Describe("virtmesh's RBAC, asked of the API server", func() {
	DescribeTable("does not let virtmesh be turned against others", func(ctx SpecContext, attrs authorizationv1.ResourceAttributes, want bool) {
		Expect(allowed(ctx, attrs)).To(Equal(want))
	},
		Entry("update Istio's injector configuration: no", authorizationv1.ResourceAttributes{Group: "admissionregistration.k8s.io",
			Resource: "mutatingwebhookconfigurations", Name: "istio-sidecar-injector", Verb: "update"}, false),
		Entry("patch its own webhook configuration: no (cert-controller updates)", authorizationv1.ResourceAttributes{Group: "admissionregistration.k8s.io",
			Resource: "mutatingwebhookconfigurations", Name: "virtmesh", Verb: "patch"}, false),
		Entry("delete a webhook configuration: no", authorizationv1.ResourceAttributes{Group: "admissionregistration.k8s.io",
			Resource: "mutatingwebhookconfigurations", Name: "virtmesh", Verb: "delete"}, false),
		Entry("update its own webhook configuration (the CA bundle): yes", authorizationv1.ResourceAttributes{Group: "admissionregistration.k8s.io",
			Resource: "mutatingwebhookconfigurations", Name: "virtmesh", Verb: "update"}, true),
		Entry("watch webhook configurations (cert-controller): yes", authorizationv1.ResourceAttributes{Group: "admissionregistration.k8s.io",
			Resource: "mutatingwebhookconfigurations", Verb: "watch"}, true),
		Entry("read a Secret in another namespace: no", authorizationv1.ResourceAttributes{Namespace: "default", Resource: "secrets", Name: "db", Verb: "get"}, false),
		Entry("list Secrets cluster-wide: no", authorizationv1.ResourceAttributes{Resource: "secrets", Verb: "list"}, false),
		Entry("read its certificate Secret: yes", authorizationv1.ResourceAttributes{Namespace: local.Namespace, Resource: "secrets",
			Name: "virtmesh-webhook-cert", Verb: "get"}, true),
		Entry("update another Secret in its own namespace: no", authorizationv1.ResourceAttributes{Namespace: local.Namespace, Resource: "secrets",
			Name: "someone-elses", Verb: "update"}, false),
		Entry("create pods: no", authorizationv1.ResourceAttributes{Namespace: "default", Resource: "pods", Verb: "create"}, false),
		Entry("exec into pods: no", authorizationv1.ResourceAttributes{Namespace: "default", Resource: "pods", Subresource: "exec", Verb: "create"}, false),
		Entry("update VirtualMachines: no", authorizationv1.ResourceAttributes{Group: "kubevirt.io", Namespace: "default", Resource: "virtualmachines", Verb: "update"}, false),
		Entry("delete VirtualMachineInstances: no", authorizationv1.ResourceAttributes{Group: "kubevirt.io", Namespace: "default",
			Resource: "virtualmachineinstances", Verb: "delete"}, false),
		Entry("update Services (virtmesh applies, never updates): no", authorizationv1.ResourceAttributes{Namespace: "default", Resource: "services", Verb: "update"}, false),
		Entry("change RBAC: no", authorizationv1.ResourceAttributes{Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Verb: "escalate"}, false),
	)
})
