package app

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
)

// cert-controller keeps the serving certificate in a Secret (mounted into the
// pod at --webhook-cert-dir) and the CA in the webhook configuration.
// Secrets: listed and watched in virtmesh's own namespace only (its caches),
// read and written only by name; a --cert-secret-name other than
// virtmesh-webhook-cert needs the same rule for that name.
// +kubebuilder:rbac:groups="",namespace=virtmesh-system,resources=secrets,verbs=list;watch
// +kubebuilder:rbac:groups="",namespace=virtmesh-system,resources=secrets,resourceNames=virtmesh-webhook-cert,verbs=get;update
//
// cert-controller lists and watches every MutatingWebhookConfiguration but
// writes only virtmesh's own: RBAC names it, so virtmesh cannot rewrite
// another (Istio's injector, say). A --webhook-configuration-name other than
// "virtmesh" needs the same rule for that name (a kustomize patch).
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,resourceNames=virtmesh,verbs=update

func (o *Options) certSecretKey() types.NamespacedName {
	return types.NamespacedName{Namespace: o.CertNamespace, Name: o.CertSecretName}
}

// rotators numbers cert-controller's controller, whose name must be unique
// in the process (a test or the demo may build a second manager).
var rotators atomic.Int32

// certRotation starts cert-controller, which creates a CA and a serving
// certificate for the webhook Service, stores them in the Secret, injects the
// CA into the MutatingWebhookConfiguration once the certificate is mounted,
// and rotates both before they expire. The webhook server reads its
// certificate when it starts, so it is started only once the kubelet has
// mounted it: not through the manager's own webhook runnable but by
// delayedWebhook, added before the manager starts.
func certRotation(mgr ctrl.Manager, o *Options, srv ctrlwebhook.Server) error {
	ready := make(chan struct{})
	name := "cert-rotator"
	if n := rotators.Add(1); n > 1 {
		name = fmt.Sprintf("cert-rotator-%d", n)
	}
	if err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:      o.certSecretKey(),
		CertDir:        o.WebhookCertDir,
		CAName:         "virtmesh-ca",
		CAOrganization: "virtmesh",
		DNSName:        fmt.Sprintf("%s.%s.svc", o.WebhookServiceName, o.CertNamespace),
		ExtraDNSNames: []string{
			o.WebhookServiceName,
			fmt.Sprintf("%s.%s", o.WebhookServiceName, o.CertNamespace),
			fmt.Sprintf("%s.%s.svc.cluster.local", o.WebhookServiceName, o.CertNamespace),
		},
		IsReady:  ready,
		Webhooks: []rotator.WebhookInfo{{Name: o.WebhookConfigurationName, Type: rotator.Mutating}},
		// Every replica serves the webhook, so every replica needs the
		// certificate; the Secret is written with optimistic concurrency.
		RequireLeaderElection: false,
		FieldOwner:            "virtmesh",
		EnableReadinessCheck:  true,
		ControllerName:        name,
	}); err != nil {
		return err
	}
	return mgr.Add(&delayedWebhook{srv: srv, ready: ready})
}

// delayedWebhook starts the webhook server once its certificate is ready.
type delayedWebhook struct {
	srv   ctrlwebhook.Server
	ready <-chan struct{}
}

func (d *delayedWebhook) Start(ctx context.Context) error {
	select {
	case <-d.ready:
	case <-ctx.Done():
		return nil
	}
	if ctx.Err() != nil {
		return nil
	}
	return d.srv.Start(ctx)
}

// NeedLeaderElection: every replica serves the webhook.
func (d *delayedWebhook) NeedLeaderElection() bool { return false }
