package webhook

import (
	"context"
	"errors"
	"net/http"
	"slices"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/virtmesh/virtmesh/internal/injector"
	"github.com/virtmesh/virtmesh/internal/mesh"
)

// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// SetupWithManager registers the VMI webhook on srv, reading namespaces
// and VirtualMachines through the manager. srv is the manager's webhook
// server, or one the caller starts itself (e.g. once its certificate is
// mounted). draining, if set, reports a replica shutting down.
func SetupWithManager(mgr ctrl.Manager, srv ctrlwebhook.Server, meshCfg mesh.Config, cfg Config, draining func() bool) error {
	return Register(srv, meshCfg, cfg, Inputs{
		NamespaceLabels: namespaceLabelsFrom(mgr.GetClient(), mgr.GetAPIReader(), meshCfg),
		VirtualMachines: virtualMachinesFrom(mgr.GetAPIReader()),
		Injectors:       injectorsFrom(mgr.GetAPIReader()),
		Draining:        draining,
	})
}

// Inputs are where the webhook reads what it needs besides the request.
type Inputs struct {
	NamespaceLabels NamespaceLabels
	VirtualMachines VirtualMachines // nil: never read
	Injectors       Injectors       // nil: never read
	// Draining reports a replica that is shutting down (nil: never): its
	// answers then close their connection, so the API server's next request
	// opens one to a replica that stays, and none races the listener closing.
	Draining func() bool
}

// Register serves the VMI webhook at Path on srv. Every path that serves the
// webhook (the manager, the load program) registers it here.
func Register(srv ctrlwebhook.Server, meshCfg mesh.Config, cfg Config, in Inputs) error {
	if err := errors.Join(meshCfg.Validate(), cfg.Validate()); err != nil {
		return err
	}
	h := &Handler{Mesh: meshCfg, Config: cfg, NamespaceLabels: in.NamespaceLabels, VirtualMachines: in.VirtualMachines, Injectors: in.Injectors}
	served := limitRequests(&admission.Webhook{Handler: h}, cfg.MaxRequestBytes, cfg.MaxInFlightBytes)
	if in.Draining != nil {
		served = closeWhileDraining(served, in.Draining)
	}
	srv.Register(Path, served)
	return nil
}

// closeWhileDraining answers with "Connection: close" while draining.
func closeWhileDraining(next http.Handler, draining func() bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if draining() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// namespaceLabelsFrom reads namespace labels from the manager's metadata-only
// cache. The API server calls the webhook on its own, fresh, view of the
// labels: when the cached labels say the namespace is not in the mesh (it may
// have been labelled a moment ago) or the cache has not seen it yet, they are
// read again from the API server, so a VMI is never admitted unmeshed into a
// namespace whose pods Istio injects.
func namespaceLabelsFrom(cached client.Reader, live client.Reader, cfg mesh.Config) NamespaceLabels {
	return func(ctx context.Context, name string) (map[string]string, error) {
		ns := &metav1.PartialObjectMetadata{}
		ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
		err := cached.Get(ctx, client.ObjectKey{Name: name}, ns)
		stale := apierrors.IsNotFound(err) ||
			(err == nil && !slices.Contains(cfg.ExcludedNamespaces, name) && !mesh.NamespaceInMesh(name, ns.Labels, cfg).InMesh)
		if stale {
			err = live.Get(ctx, client.ObjectKey{Name: name}, ns)
		}
		if err != nil {
			return nil, err
		}
		return ns.Labels, nil
	}
}

// virtualMachinesFrom reads VirtualMachines from the API server: a VMI is
// created when its VM starts, rarely, and the webhook runs in every replica,
// where a cache of every VM would cost more than the read.
func virtualMachinesFrom(live client.Reader) VirtualMachines {
	return func(ctx context.Context, namespace, name string) (*kubevirtv1.VirtualMachine, error) {
		vm := &kubevirtv1.VirtualMachine{}
		if err := live.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, vm); err != nil {
			return nil, err
		}
		return vm, nil
	}
}

// injectorsFrom reads Istio's injectors from the API server (only for the
// rare VMIs that need it): any read error, or RBAC, reads as none.
func injectorsFrom(live client.Reader) Injectors {
	return func(ctx context.Context, nsLabels, podLabels map[string]string) (injector.Decision, bool) {
		mwcs := &admissionregistrationv1.MutatingWebhookConfigurationList{}
		if live.List(ctx, mwcs, client.MatchingLabels{injector.WebhookLabel: injector.WebhookLabelValue}) != nil {
			return injector.Decision{}, false
		}
		mwc := injector.Select(mwcs.Items, nsLabels, podLabels)
		if mwc == nil {
			return injector.Decision{}, false
		}
		key, ok := injector.ConfigMapKey(mwc)
		cm := &corev1.ConfigMap{}
		if !ok || live.Get(ctx, key, cm) != nil {
			return injector.Decision{}, false
		}
		return injector.Decide(cm.Data["values"], cm.Data["config"]), true
	}
}
