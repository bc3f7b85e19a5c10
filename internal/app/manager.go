package app

import (
	"context"
	"crypto/tls"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/virtmesh/virtmesh/controllers"
	"github.com/virtmesh/virtmesh/internal/version"
	vmwebhook "github.com/virtmesh/virtmesh/webhook"
)

// LeaderElectionID names the Lease the replicas compete for.
const LeaderElectionID = "virtmesh.virtmesh.io"

// NewManager builds a manager from validated options. Nothing is started.
func NewManager(cfg *rest.Config, o *Options) (ctrl.Manager, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	var tlsOpts []func(*tls.Config)
	if !o.EnableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	timeout := o.GracefulShutdownTimeout
	if o.EnableControllers && o.Controllers.NADMode == controllers.NADAuto {
		// Only the namespaces virtmesh may read: a cache that cannot sync stops the manager.
		readable, dropped, err := controllers.ReadableIstioNamespaces(context.Background(), cfg, o.Controllers.IstioNamespaces)
		if err != nil {
			return nil, err
		}
		for _, why := range dropped {
			ctrl.Log.WithName("setup").Info("not reading Istio injector ConfigMaps there; NADs for its injectors are planned as unknown", "why", why)
		}
		o.Controllers.ReadableIstioNamespaces = readable
	}
	cacheOpts := cache.Options{SyncPeriod: &o.Controllers.SyncPeriod, ByObject: map[client.Object]cache.ByObject{}}
	if o.EnableControllers {
		cacheOpts.ByObject = controllers.CacheByObject(o.Controllers)
		cacheOpts.DefaultTransform = controllers.DefaultTransform()
		cacheOpts.NewInformer = controllers.NewInformer
	}
	if o.EnableWebhook && o.CertRotation {
		cacheOpts.ByObject[&corev1.Secret{}] = certSecretCache(o.certSecretKey())
	}
	if cfg.QPS == 0 && cfg.RateLimiter == nil {
		// As ctrl.GetConfig does: rely on the API server's priority and
		// fairness rather than client-go's 5 requests per second.
		cfg = rest.CopyConfig(cfg)
		cfg.QPS = -1
	}
	o.webhookServer = ctrlwebhook.NewServer(ctrlwebhook.Options{
		Host:    o.WebhookHost,
		Port:    o.WebhookPort,
		CertDir: o.WebhookCertDir,
		TLSOpts: tlsOpts,
	})
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: NewScheme(),
		Cache:  cacheOpts,
		// virtmesh's controllers have fixed, distinct names; skipping the
		// process-wide uniqueness check lets a process build a new manager
		// after stopping one (tests, the demo).
		Controller:                    ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
		WebhookServer:                 o.webhookServer,
		Metrics:                       metricsserver.Options{BindAddress: o.MetricsBindAddress, TLSOpts: tlsOpts},
		HealthProbeBindAddress:        o.HealthProbeBindAddress,
		PprofBindAddress:              o.PprofBindAddress,
		LeaderElection:                o.LeaderElect,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       o.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       &timeout,
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding liveness check: %w", err)
	}
	if err := mgr.AddReadyzCheck("ready", o.drain.checker(readiness(o))); err != nil {
		return nil, fmt.Errorf("adding readiness check: %w", err)
	}
	return mgr, nil
}

// readiness is the manager's readiness check: without the webhook, always
// ready; with it, ready only once the webhook server accepts TLS connections,
// so a Service never routes admission requests to a replica still starting.
// With --cert-rotation the webhook server starts only once its certificate is
// mounted (see certRotation).
func readiness(o *Options) healthz.Checker {
	switch {
	case !o.EnableWebhook:
		return healthz.Ping
	default:
		// Fails until the server listens, which with --cert-rotation is once
		// the certificate is mounted.
		return o.webhookServer.StartedChecker()
	}
}

// setupWebhook registers the VMI webhook on the server that will serve it:
// the manager's own, or with --cert-rotation one started only once its
// certificate is mounted (see certRotation).
func setupWebhook(mgr ctrl.Manager, o *Options) error {
	srv := o.webhookServer
	if !o.CertRotation {
		srv = mgr.GetWebhookServer() // adds it to the manager's runnables
	}
	if err := vmwebhook.SetupWithManager(mgr, srv, o.Mesh, o.Webhook, o.drain.draining.Load); err != nil {
		return fmt.Errorf("setting up the VMI webhook: %w", err)
	}
	if o.CertRotation {
		if err := certRotation(mgr, o, srv); err != nil {
			return fmt.Errorf("setting up certificate rotation: %w", err)
		}
		if err := keepCertSecret(mgr, o.certSecretKey(), o.WebhookCertDir); err != nil {
			return fmt.Errorf("setting up the certificate Secret keeper: %w", err)
		}
	}
	return nil
}

// Run builds the manager, registers everything the options enable and blocks
// until ctx is cancelled and the manager has shut down.
func Run(ctx context.Context, cfg *rest.Config, o *Options) error {
	mgr, err := NewManager(cfg, o)
	if err != nil {
		return err
	}
	if o.EnableWebhook {
		if err := setupWebhook(mgr, o); err != nil {
			return err
		}
	}
	if o.EnableControllers {
		if err := controllers.SetupWithManager(ctx, mgr, o.Mesh, o.Controllers); err != nil {
			return fmt.Errorf("setting up the controllers: %w", err)
		}
	}
	ctrl.Log.WithName("setup").Info("starting manager", "version", version.String(),
		"webhook", o.EnableWebhook, "certRotation", o.CertRotation, "controllers", o.EnableControllers, "leaderElection", o.LeaderElect)
	delay := o.ShutdownDelay
	if !o.EnableWebhook {
		delay = 0 // nothing to drain
	}
	mgrCtx, cancel := o.drain.context(ctx, delay)
	defer cancel()
	if err := mgr.Start(mgrCtx); err != nil {
		return fmt.Errorf("running manager: %w", err)
	}
	return nil
}
