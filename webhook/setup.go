package webhook

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// SetupWithManager registers the VMI webhook at Path on the manager's webhook server.
func SetupWithManager(mgr ctrl.Manager, cfg Config) error {
	return SetupWithServer(mgr, mgr.GetWebhookServer(), cfg)
}

// SetupWithServer registers the VMI webhook at Path on srv, a webhook server
// the caller starts (e.g. once its certificate exists), reading namespaces
// through the manager.
func SetupWithServer(mgr ctrl.Manager, srv ctrlwebhook.Server, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	h := &Handler{Config: cfg, NamespaceLabels: namespaceLabelsFrom(mgr.GetClient(), mgr.GetAPIReader())}
	srv.Register(Path, &admission.Webhook{Handler: h})
	return nil
}

// namespaceLabelsFrom reads namespace labels from the manager's metadata-only
// cache, falling back to the API server for a namespace created so recently
// that the cache has not seen it yet.
func namespaceLabelsFrom(cached client.Reader, live client.Reader) NamespaceLabels {
	return func(ctx context.Context, name string) (map[string]string, error) {
		ns := &metav1.PartialObjectMetadata{}
		ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
		err := cached.Get(ctx, client.ObjectKey{Name: name}, ns)
		if apierrors.IsNotFound(err) {
			err = live.Get(ctx, client.ObjectKey{Name: name}, ns)
		}
		if err != nil {
			return nil, err
		}
		return ns.Labels, nil
	}
}
