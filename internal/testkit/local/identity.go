package local

import (
	"context"
	"fmt"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/controlplane"
	"github.com/virtmesh/virtmesh/internal/manifests"
)

// Namespace and ServiceAccount are virtmesh's, as in manifests/rbac.
const (
	Namespace      = "virtmesh-system"
	ServiceAccount = "virtmesh"
)

// IstioNamespace is where Istio's control plane (its injectors' ConfigMaps)
// lives, as on a cluster with Istio installed.
const IstioNamespace = "istio-system"

// InstallRBAC creates virtmesh's namespace and Istio's (a cluster with Istio
// has it; the RBAC names it) and applies manifests/rbac from the repository
// at root.
func InstallRBAC(ctx context.Context, admin client.Client, root string) error {
	for _, ns := range []string{Namespace, IstioNamespace} {
		if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return fmt.Errorf("creating namespace %s: %w", ns, err)
		}
	}
	rbac, err := manifests.Render(filepath.Join(root, "manifests", "rbac"))
	if err != nil {
		return err
	}
	return manifests.Apply(ctx, admin, rbac)
}

// ManagerConfig authenticates an in-process manager as virtmesh's
// ServiceAccount, so it has exactly the rights InstallRBAC granted.
func ManagerConfig(cp *controlplane.ControlPlane) *rest.Config {
	return cp.ImpersonatedConfig(Namespace, ServiceAccount)
}
