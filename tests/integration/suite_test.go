// Package integration runs virtmesh against a real control plane: etcd,
// kube-apiserver and kube-controller-manager built from source by
// hack/controlplane.sh, KubeVirt's real CRDs, and the RBAC and webhook
// configuration shipped in manifests/. The manager runs as its own
// ServiceAccount, so every spec also proves the shipped RBAC suffices.
package integration

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/virtmesh/virtmesh/internal/app"
	"github.com/virtmesh/virtmesh/internal/controlplane"
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
	return ns.Name
}
