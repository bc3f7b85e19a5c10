// Package integration runs virtmesh against a real control plane: etcd,
// kube-apiserver and kube-controller-manager built from source by
// hack/controlplane.sh, KubeVirt's real CRDs, and the RBAC and webhook
// configuration shipped in manifests/. The manager runs as its own
// ServiceAccount, so every spec also proves the shipped RBAC suffices.
package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/virtmesh/virtmesh/internal/app"
	"github.com/virtmesh/virtmesh/internal/controlplane"
	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/onboard"
	"github.com/virtmesh/virtmesh/internal/testkit/local"
)

var (
	repoRoot = filepath.Join("..", "..")
	cp       *controlplane.ControlPlane
	// adminClient acts as a cluster admin; use it to arrange and inspect.
	adminClient client.Client
	// mgr is the virtmesh manager the specs run against.
	mgr *runningManager
)

func TestIntegration(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Integration Suite")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	// A real API server, and virtmesh's Events sent from a rate-limited
	// queue after the write they report: no wait is as short as Gomega's
	// 1 s default.
	SetDefaultEventuallyTimeout(converge)

	By("starting etcd, kube-apiserver and kube-controller-manager")
	var err error
	cp, err = local.StartControlPlane(repoRoot, controlplane.Options{ControllerManagerLog: GinkgoWriter})
	Expect(err).NotTo(HaveOccurred())

	adminClient, err = client.New(cp.Config(), client.Options{Scheme: app.NewScheme()})
	Expect(err).NotTo(HaveOccurred())

	By("installing the shipped RBAC")
	Expect(local.InstallRBAC(ctx, adminClient, repoRoot)).To(Succeed())

	By("starting virtmesh as its ServiceAccount")
	mgr = startManager(managerConfig())
}, NodeTimeout(5*time.Minute))

var _ = AfterSuite(func(ctx SpecContext) {
	if mgr != nil {
		Expect(mgr.stop(ctx)).To(Succeed())
	}
	if cp != nil {
		Expect(cp.Stop(ctx)).To(Succeed())
	}
}, NodeTimeout(2*time.Minute))

// managerConfig is the ServiceAccount identity the manager runs with.
func managerConfig() *rest.Config {
	return local.ManagerConfig(cp)
}

// newNamespace creates a namespace for one spec and deletes it afterwards.
func newNamespace(ctx context.Context) string {
	GinkgoHelper()
	return newLabelledNamespace(ctx, nil)
}

// newLabelledNamespace creates a namespace with labels for one spec and deletes it afterwards.
func newLabelledNamespace(ctx context.Context, labels map[string]string) string {
	GinkgoHelper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "spec-", Labels: labels}}
	Expect(adminClient.Create(ctx, ns)).To(Succeed())
	DeferCleanup(func(ctx SpecContext) {
		Expect(client.IgnoreNotFound(adminClient.Delete(ctx, ns))).To(Succeed())
	})
	specNamespaces = append(specNamespaces, ns.Name)
	return ns.Name
}

// specNamespaces are the namespaces the running spec created.
var specNamespaces []string

var _ = BeforeEach(func() { specNamespaces = nil })

// A failed spec's namespaces are dumped after it, before any of its
// cleanups (which delete pods, VMIs and admission policies) run.
var _ = AfterEach(func(ctx SpecContext) {
	if !CurrentSpecReport().Failed() {
		return
	}
	for _, ns := range specNamespaces {
		dumpNamespace(ctx, ns)
	}
	dumpOnboardings(ctx)
})

// dumpNamespace writes what a failed spec left in namespace ns to the
// spec's output: its Events in order, and its VMIs, migrations, launcher
// pods and Services, so a failure in CI can be understood from its log.
func dumpNamespace(ctx context.Context, ns string) {
	w := GinkgoWriter
	fmt.Fprintf(w, "\n--- namespace %s after the failure ---\n", ns)
	events := &corev1.EventList{}
	if err := adminClient.List(ctx, events, client.InNamespace(ns)); err != nil {
		fmt.Fprintf(w, "listing Events: %v\n", err)
	}
	slices.SortStableFunc(events.Items, func(a, b corev1.Event) int { return eventTime(a).Compare(eventTime(b)) })
	for _, e := range events.Items {
		fmt.Fprintf(w, "event %s %s %s/%s %s x%d: %s\n", eventTime(e).Format(time.RFC3339Nano), e.Type,
			e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, max(e.Count, 1), e.Message)
	}
	// Events about the Namespace itself are stored in default.
	nsEvents := &corev1.EventList{}
	if err := adminClient.List(ctx, nsEvents, client.InNamespace(metav1.NamespaceDefault)); err != nil {
		fmt.Fprintf(w, "listing Events in default: %v\n", err)
	}
	for _, e := range nsEvents.Items {
		if e.InvolvedObject.Kind == "Namespace" && e.InvolvedObject.Name == ns {
			fmt.Fprintf(w, "event (in default) %s %s Namespace/%s %s x%d: %s\n", eventTime(e).Format(time.RFC3339Nano), e.Type,
				ns, e.Reason, max(e.Count, 1), e.Message)
		}
	}
	lists := []client.ObjectList{&kubevirtv1.VirtualMachineList{}, &kubevirtv1.VirtualMachineInstanceList{},
		&kubevirtv1.VirtualMachineInstanceMigrationList{}, &corev1.PodList{}, &corev1.ServiceList{}, &nadv1.NetworkAttachmentDefinitionList{}}
	for _, l := range lists {
		if err := adminClient.List(ctx, l, client.InNamespace(ns)); err != nil {
			fmt.Fprintf(w, "listing %T: %v\n", l, err)
			continue
		}
		_ = meta.EachListItem(l, func(o runtime.Object) error {
			if m, err := meta.Accessor(o); err == nil {
				m.SetManagedFields(nil)
			}
			return nil
		})
		out, err := yaml.Marshal(l)
		if err != nil {
			fmt.Fprintf(w, "%T: %v\n", l, err)
			continue
		}
		fmt.Fprintf(w, "%T:\n%s\n", l, out)
	}
	fmt.Fprintf(w, "--- end of namespace %s ---\n", ns)
}

// dumpOnboardings lists, cluster-wide, what may hold an onboarding slot:
// VMIs carrying an onboarding annotation and virtmesh's migrations that
// have not ended.
func dumpOnboardings(ctx context.Context) {
	w := GinkgoWriter
	fmt.Fprintln(w, "--- onboardings in the cluster ---")
	vmis := &kubevirtv1.VirtualMachineInstanceList{}
	if err := adminClient.List(ctx, vmis); err != nil {
		fmt.Fprintf(w, "listing VMIs: %v\n", err)
	}
	for _, v := range vmis.Items {
		if a, ok := v.Annotations[mesh.OnboardingAnnotation]; ok {
			fmt.Fprintf(w, "VMI %s/%s (deleting: %v): %s\n", v.Namespace, v.Name, v.DeletionTimestamp != nil, a)
		}
	}
	ms := &kubevirtv1.VirtualMachineInstanceMigrationList{}
	if err := adminClient.List(ctx, ms, client.HasLabels{onboard.MigrationLabel}); err != nil {
		fmt.Fprintf(w, "listing migrations: %v\n", err)
	}
	for _, m := range ms.Items {
		if !m.IsFinal() {
			fmt.Fprintf(w, "migration %s/%s of VMI %s: phase %q\n", m.Namespace, m.Name, m.Spec.VMIName, m.Status.Phase)
		}
	}
	fmt.Fprintln(w, "--- end of onboardings ---")
}

// eventTime is when an Event last happened, as the recorder set it.
func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	}
	return e.CreationTimestamp.Time
}
