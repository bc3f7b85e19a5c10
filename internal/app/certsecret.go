package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// cert-controller fills and rotates the certificate Secret but never creates
// it: deleted by mistake, it would stop the webhook for good (every VMI create
// in mesh namespaces fails while failurePolicy is Fail). virtmesh recreates
// it from the certificate still mounted in the pod (same CA, so the webhook
// configuration's caBundle stays valid and nothing fails meanwhile), or empty
// for cert-controller to fill. RBAC cannot name the object of a create, so
// create is granted on Secrets in virtmesh's namespace only.
// +kubebuilder:rbac:groups="",namespace=virtmesh-system,resources=secrets,verbs=create

// certSecretKeeper recreates the certificate Secret when it is missing.
type certSecretKeeper struct {
	client  client.Client
	key     types.NamespacedName
	certDir string // where the Secret is mounted
}

func (k *certSecretKeeper) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if req.NamespacedName != k.key {
		return reconcile.Result{}, nil
	}
	return reconcile.Result{}, k.ensure(ctx)
}

func (k *certSecretKeeper) ensure(ctx context.Context) error {
	err := k.client.Get(ctx, k.key, &corev1.Secret{})
	if !apierrors.IsNotFound(err) {
		return err
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: k.key.Name, Namespace: k.key.Namespace,
		Labels: map[string]string{"app.kubernetes.io/name": "virtmesh"}}, Type: corev1.SecretTypeOpaque, Data: k.mounted()}
	if err := k.client.Create(ctx, secret); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("recreating the certificate Secret %s: %w", k.key, err)
	}
	log.FromContext(ctx).Info("the webhook's certificate Secret was missing: created it again", "secret", k.key,
		"fromMountedCertificate", len(secret.Data) > 0)
	return nil
}

// mounted reads the CA and serving certificate cert-controller wrote, as the
// kubelet mounted them, or nothing if any is missing.
func (k *certSecretKeeper) mounted() map[string][]byte {
	data := map[string][]byte{}
	for _, name := range []string{"ca.crt", "ca.key", "tls.crt", "tls.key"} {
		b, err := os.ReadFile(filepath.Join(k.certDir, name))
		if err != nil || len(b) == 0 {
			return nil
		}
		data[name] = b
	}
	return data
}

// keepCertSecret registers the keeper: at start, and whenever the Secret is
// deleted. Every replica runs it (the certificate is needed before a leader
// is elected); a create that loses the race finds the Secret there.
func keepCertSecret(mgr ctrl.Manager, key types.NamespacedName, certDir string) error {
	k := &certSecretKeeper{client: mgr.GetClient(), key: key, certDir: certDir}
	if err := mgr.Add(unelected{manager.RunnableFunc(k.ensure)}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("cert-secret").
		For(&corev1.Secret{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetNamespace() == key.Namespace && o.GetName() == key.Name
		}))).
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false)}).
		Complete(k)
}

// certSecretCache narrows the manager's cache of Secrets to the one Secret.
func certSecretCache(key types.NamespacedName) cache.ByObject {
	return cache.ByObject{Namespaces: map[string]cache.Config{key.Namespace: {}},
		Field: fields.OneTermEqualSelector("metadata.name", key.Name)}
}

// unelected runs in every replica, leader or not.
type unelected struct{ manager.Runnable }

func (unelected) NeedLeaderElection() bool { return false }
