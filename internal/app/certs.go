package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

// cert-controller keeps the serving certificate in a Secret (mounted into the
// pod at --webhook-cert-dir) and the CA in the webhook configuration.
// +kubebuilder:rbac:groups="",namespace=virtmesh-system,resources=secrets,verbs=get;list;watch;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;list;watch;update

// certRotation starts cert-controller, which creates a CA and a serving
// certificate for the webhook Service, stores them in the Secret, injects the
// CA into the MutatingWebhookConfiguration, and rotates both before they
// expire. ready is closed once the kubelet has mounted the certificate, so
// the webhook server (which reads it at start) can be started.
func certRotation(mgr ctrl.Manager, o *Options, ready chan struct{}) error {
	return rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:      types.NamespacedName{Namespace: o.CertNamespace, Name: o.CertSecretName},
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
	})
}

// webhookReadiness is ready once the webhook server accepts TLS connections;
// before that (certificates not mounted yet) it says why it is not.
type webhookReadiness struct {
	started atomic.Pointer[healthz.Checker]
}

func (w *webhookReadiness) set(c healthz.Checker) { w.started.Store(&c) }

func (w *webhookReadiness) check(req *http.Request) error {
	c := w.started.Load()
	if c == nil {
		return errors.New("waiting for the webhook serving certificate")
	}
	return (*c)(req)
}

// registerWebhookWhenReady registers the webhook once certificates are ready.
// The webhook server reads its certificate when it starts, so it is only
// added to the manager then.
func registerWebhookWhenReady(ctx context.Context, mgr ctrl.Manager, ready <-chan struct{}, readiness *webhookReadiness,
	register func() error, fail func(error)) {
	go func() {
		select {
		case <-ready:
		case <-ctx.Done():
			return
		}
		if err := register(); err != nil {
			fail(err)
			return
		}
		readiness.set(mgr.GetWebhookServer().StartedChecker())
	}()
}
