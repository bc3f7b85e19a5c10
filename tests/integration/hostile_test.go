package integration

// What a hostile tenant (edit rights in its own namespaces) tried, from an
// adversarial review: each spec asserts that it does not work.

import (
	"context"
	"fmt"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/controllers"
	"github.com/virtmesh/virtmesh/internal/app"
	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/onboard"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

// tenantIn gives ServiceAccount "tenant" of ns namespace-edit rights over
// what a VM owner uses, and returns a client acting as it.
func tenantIn(ctx context.Context, ns string) client.Client {
	GinkgoHelper()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "tenant-edit", Namespace: ns}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"kubevirt.io"}, Resources: []string{"*"}, Verbs: []string{"*"}},
		{APIGroups: []string{"k8s.cni.cncf.io"}, Resources: []string{"*"}, Verbs: []string{"*"}},
		{APIGroups: []string{""}, Resources: []string{"pods", "services", "configmaps"}, Verbs: []string{"*"}},
	}}
	Expect(adminClient.Create(ctx, role)).To(Succeed())
	Expect(adminClient.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "tenant-edit", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "tenant-edit"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "tenant", Namespace: ns}}})).To(Succeed())
	cfg := cp.ImpersonatedConfig(ns, "tenant")
	c, err := client.New(cfg, client.Options{Scheme: app.NewScheme()})
	Expect(err).NotTo(HaveOccurred())
	return c
}

var _ = Describe("Hostile tenant", func() {
	It("H1: cannot hold every onboarding slot forever by writing a VMI's status (virt-api does not stop users writing VMI status)", func(ctx SpecContext) {
		installStandInInjector(ctx)
		onboardNS := map[string]string{"istio-injection": "enabled", mesh.ExistingVMIsLabel: string(mesh.ExistingOnboard)}
		By("a tenant with two namespaces (onboard policy) parks one VMI in each: never running, status claiming a migration since an hour")
		for _, name := range []string{"squat-a", "squat-b"} {
			ns := newLabelledNamespace(ctx, onboardNS)
			tenant := tenantIn(ctx, ns)
			vmi := testkit.MeshedVMI(ns, name, name, 8080)
			Expect(tenant.Create(ctx, vmi)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(adminClient.Delete(ctx, vmi))).To(Succeed()) })
			Eventually(func() error {
				if err := tenant.Get(ctx, client.ObjectKeyFromObject(vmi), vmi); err != nil {
					return err
				}
				long := time.Now().Add(-time.Hour)
				vmi.Annotations[mesh.OnboardingAnnotation] = onboard.Attempt(vmi, 1, mesh.OnboardedByCLI, long).Encode()
				vmi.Status.Phase = kubevirtv1.Scheduling
				vmi.Status.MigrationState = &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: "forged",
					StartTimestamp: ptr.To(metav1.NewTime(long))}
				return tenant.Update(ctx, vmi)
			}).Should(Succeed())
		}

		By("another tenant's running, migratable VM in a namespace that joins the mesh with the onboard policy")
		victimNS := newNamespace(ctx)
		victim := legacyVM(ctx, victimNS, "victim")
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(adminClient.Delete(ctx, victim))).To(Succeed()) })
		setNamespaceLabels(ctx, victimNS, onboardNS)

		Eventually(func() ([]kubevirtv1.VirtualMachineInstanceMigration, error) {
			return onboardingMigrations(ctx, victimNS)
		}).
			WithTimeout(converge).Should(Not(BeEmpty()), "the victim's onboarding never starts: both slots are held by VMIs that are not even running")
	})

	It("H3: one tenant creating and deleting a NAD in its own namespace does not make virtmesh reconcile every namespace", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		tenant := tenantIn(ctx, ns)
		for range 20 { // other tenants' namespaces
			newNamespace(ctx)
		}
		all := &corev1.NamespaceList{}
		Expect(adminClient.List(ctx, all)).To(Succeed())
		time.Sleep(3 * time.Second) // settle
		before := reconciles("nad")
		for i := range 5 {
			nad := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("mine-%d", i), Namespace: ns},
				Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: `{"cniVersion":"0.3.1","type":"bridge"}`}}
			Expect(tenant.Create(ctx, nad)).To(Succeed())
			time.Sleep(300 * time.Millisecond)
			Expect(tenant.Delete(ctx, nad)).To(Succeed())
			time.Sleep(300 * time.Millisecond)
		}
		time.Sleep(3 * time.Second)
		after := reconciles("nad")
		GinkgoWriter.Printf("H3: %d namespaces; 10 NAD writes in one namespace -> %.0f NAD reconciles\n", len(all.Items), after-before)
		// A sweep per write would be 10 per namespace; what other specs'
		// namespaces being deleted meanwhile cause (one or two each) counts
		// here too.
		Expect(after-before).To(BeNumerically("<", 3*len(all.Items)),
			"10 writes in one namespace should reconcile that namespace, not all %d each time", len(all.Items))
	})

	It("H5: an edit of one VM of a large app writes an Event to at most 10 of its VMs", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		tenant := tenantIn(ctx, ns)
		const n = 40
		for i := range n { // halted VMs cost the tenant nothing
			vm := testkit.MeshVM(fmt.Sprintf("vm-%02d", i), "shop", "", 8080)
			vm.Namespace = ns
			Expect(tenant.Create(ctx, vm)).To(Succeed())
		}
		Eventually(getService(ctx, ns, "shop")).WithTimeout(converge).Should(WithTransform(func(s *corev1.Service) int { return len(s.OwnerReferences) }, Equal(n)))
		count := func() int {
			list := &corev1.EventList{}
			Expect(adminClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			c := 0
			for _, e := range list.Items {
				if e.Reason == controllers.ReasonServiceUpdated {
					c += int(max(e.Count, 1))
				}
			}
			return c
		}
		settle := func() int {
			last := -1
			for {
				time.Sleep(3 * time.Second)
				c := count()
				if c == last {
					return c
				}
				last = c
			}
		}
		before := settle()
		By("the tenant toggles one port on one VM 4 times")
		for i := range 4 {
			Eventually(func() error {
				vm := &kubevirtv1.VirtualMachine{}
				if err := tenant.Get(ctx, client.ObjectKey{Namespace: ns, Name: "vm-00"}, vm); err != nil {
					return err
				}
				ifc := &vm.Spec.Template.Spec.Domain.Devices.Interfaces[0]
				ifc.Ports = []kubevirtv1.Port{{Port: 8080}}
				if i%2 == 0 {
					ifc.Ports = append(ifc.Ports, kubevirtv1.Port{Port: 9000 + int32(i)})
				}
				return tenant.Update(ctx, vm)
			}).Should(Succeed())
			time.Sleep(time.Second)
		}
		after := settle()
		GinkgoWriter.Printf("H5: %d VMs; 4 tenant writes -> %d ServiceUpdated Event writes (before %d)\n", n, after-before, before)
		Expect(after-before).To(BeNumerically("<=", 4*10), "at most 10 Events per change of the Service")
	})
})
