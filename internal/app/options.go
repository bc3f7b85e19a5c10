package app

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/virtmesh/virtmesh/controllers"
	"github.com/virtmesh/virtmesh/internal/mesh"
	vmwebhook "github.com/virtmesh/virtmesh/webhook"
)

// Options are the manager's command-line settings. The flag names are a
// contract: manifests, kubevirtci scripts and users rely on them.
type Options struct {
	WebhookPort            int
	WebhookCertDir         string
	WebhookHost            string
	EnableHTTP2            bool
	MetricsBindAddress     string
	HealthProbeBindAddress string
	// PprofBindAddress serves Go's profiles (/debug/pprof); "" or "0" is off.
	PprofBindAddress        string
	LeaderElect             bool
	LeaderElectionNamespace string
	GracefulShutdownTimeout time.Duration
	// ShutdownDelay is how long the webhook goes on serving, not ready, after
	// SIGTERM, while the endpoints controller takes the replica out.
	ShutdownDelay     time.Duration
	EnableWebhook     bool
	ShowVersion       bool
	EnableControllers bool
	// Certificates: with CertRotation virtmesh makes and rotates its own.
	CertRotation             bool
	CertNamespace            string
	CertSecretName           string
	WebhookServiceName       string
	WebhookConfigurationName string

	webhookServer ctrlwebhook.Server // built by NewManager
	drain         drain
	// Mesh decides which VMIs are in the mesh, for the webhook and the
	// controllers alike (one membership configuration).
	Mesh mesh.Config
	// Webhook configures the VMI mutation.
	Webhook vmwebhook.Config
	// Controllers configures the NAD and Service controllers.
	Controllers controllers.Config
}

// NewOptions returns the defaults a Deployment runs with.
func NewOptions() *Options {
	return &Options{
		WebhookPort:              9443,
		WebhookCertDir:           "/tmp/k8s-webhook-server/serving-certs",
		MetricsBindAddress:       ":8080",
		HealthProbeBindAddress:   ":8081",
		GracefulShutdownTimeout:  30 * time.Second,
		ShutdownDelay:            10 * time.Second,
		EnableWebhook:            true,
		EnableControllers:        true,
		CertNamespace:            envOr("POD_NAMESPACE", "virtmesh-system"),
		CertSecretName:           "virtmesh-webhook-cert",
		WebhookServiceName:       "virtmesh-webhook",
		WebhookConfigurationName: "virtmesh",
		Mesh:                     mesh.DefaultConfig(),
		Webhook:                  vmwebhook.DefaultConfig(),
		Controllers:              controllers.DefaultConfig(),
	}
}

// AddFlags registers every option on fs. The --kubeconfig flag is registered
// by controller-runtime itself on the default flag set.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.IntVar(&o.WebhookPort, "webhook-port", o.WebhookPort, "Port the mutating webhook server listens on.")
	fs.StringVar(&o.WebhookCertDir, "webhook-cert-dir", o.WebhookCertDir,
		"Directory holding the webhook serving certificate as tls.crt and tls.key; reloaded when the files change.")
	fs.StringVar(&o.WebhookHost, "webhook-host", o.WebhookHost, "Address the webhook server binds to (empty: all addresses).")
	fs.BoolVar(&o.EnableHTTP2, "enable-http2", o.EnableHTTP2,
		"Serve the webhook over HTTP/2 as well as HTTP/1.1. Off by default (HTTP/2 Rapid Reset, CVE-2023-44487).")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress,
		`Address the Prometheus metrics endpoint binds to; "0" disables it.`)
	fs.StringVar(&o.PprofBindAddress, "pprof-bind-address", o.PprofBindAddress,
		"Serve Go's runtime profiles (/debug/pprof/) on this address, e.g. 127.0.0.1:6060 (off by default: they reveal internals).")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", o.HealthProbeBindAddress,
		`Address the /healthz and /readyz endpoints bind to; "0" disables them.`)
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect,
		"Run the controllers only in the replica holding the leader lease. The webhook is served by every replica.")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", o.LeaderElectionNamespace,
		"Namespace of the leader lease (default: the pod's own namespace; required outside a cluster).")
	fs.DurationVar(&o.GracefulShutdownTimeout, "graceful-shutdown-timeout", o.GracefulShutdownTimeout,
		"How long to wait for in-flight requests and reconciles when stopping.")
	fs.DurationVar(&o.ShutdownDelay, "shutdown-delay", o.ShutdownDelay,
		"After SIGTERM, how long the webhook goes on serving with readiness failing, so endpoints drain before it stops "+
			"(keep it, plus --graceful-shutdown-timeout, below the pod's terminationGracePeriodSeconds).")
	fs.BoolVar(&o.EnableWebhook, "enable-webhook", o.EnableWebhook, "Serve the VMI mutating webhook.")
	fs.BoolVar(&o.CertRotation, "cert-rotation", o.CertRotation,
		"Create and rotate the webhook's CA and serving certificate (kept in --cert-secret-name, mounted at --webhook-cert-dir) "+
			"and inject the CA into --webhook-configuration-name. Off when cert-manager or another tool provides the certificate.")
	fs.StringVar(&o.CertNamespace, "cert-namespace", o.CertNamespace,
		"Namespace of the certificate Secret and the webhook Service ($POD_NAMESPACE when set, which the Deployment sets).")
	fs.StringVar(&o.CertSecretName, "cert-secret-name", o.CertSecretName, "Secret holding the webhook serving certificate.")
	fs.StringVar(&o.WebhookServiceName, "webhook-service-name", o.WebhookServiceName, "Service the API server calls the webhook through.")
	fs.StringVar(&o.WebhookConfigurationName, "webhook-configuration-name", o.WebhookConfigurationName,
		"MutatingWebhookConfiguration whose caBundle --cert-rotation keeps current.")
	fs.BoolVar(&o.EnableControllers, "enable-controllers", o.EnableControllers,
		"Run the NetworkAttachmentDefinition and Service controllers (behind leader election when --leader-elect is set).")
	fs.Func("cni-nad", `Manage istio-cni NetworkAttachmentDefinitions (Multus clusters): "auto" (default: do what the Istio injector `+
		`of each mesh namespace needs), "per-namespace" (one in every mesh namespace) or "off".`,
		func(v string) error { o.Controllers.NADMode = controllers.NADMode(v); return nil })
	fs.Func("istio-namespaces", "Comma-separated namespaces where the Istio injectors' ConfigMaps live, read with --cni-nad=auto (default "+
		strings.Join(o.Controllers.IstioNamespaces, ",")+"); RBAC must let virtmesh read ConfigMaps there.",
		func(v string) error { o.Controllers.IstioNamespaces = splitList(v); return nil })
	fs.StringVar(&o.Controllers.NADName, "cni-nad-name", o.Controllers.NADName,
		"Name of the istio-cni NetworkAttachmentDefinition (OpenShift Service Mesh 2.x uses versioned names such as v2-5-istio-cni).")
	fs.DurationVar(&o.Controllers.NADCleanupDelay, "nad-cleanup-delay", o.Controllers.NADCleanupDelay,
		"How long a NetworkAttachmentDefinition virtmesh created stays after no VM needs it any more (the namespace left the mesh, "+
			"or its Istio injector stopped referencing it) before virtmesh deletes it; 0 deletes at once.")
	fs.IntVar(&o.Controllers.Workers, "controller-workers", o.Controllers.Workers,
		"How many namespaces (NADs) and apps (Services) each controller reconciles at once.")
	fs.Var(existingVMIsFlag{&o.Controllers.ExistingVMIs}, "existing-vmis",
		"What to do with VMIs that were running before their namespace joined the mesh (their next live migration would break them): "+
			"pin (label them sidecar.istio.io/inject=false so migrations keep them out), onboard (pin, then bring masquerade VMIs that "+
			"can live-migrate into the mesh by a live migration), or ignore. A namespace label virtmesh.io/existing-vmis overrides it.")
	fs.IntVar(&o.Controllers.OnboardingConcurrency, "onboarding-concurrency", o.Controllers.OnboardingConcurrency,
		"How many onboarding live migrations virtmesh runs at once in the cluster (one per namespace).")
	fs.DurationVar(&o.Controllers.OnboardingRetryDelay, "onboarding-retry-delay", o.Controllers.OnboardingRetryDelay,
		fmt.Sprintf("How long virtmesh waits after an onboarding migration fails before it tries again; the wait doubles each time, "+
			"and after %d failed attempts the VMI is pinned out of the mesh again.", mesh.MaxOnboardingAttempts))
	fs.DurationVar(&o.Controllers.SyncPeriod, "sync-period", o.Controllers.SyncPeriod,
		"How often the controllers reconcile every object again, changed or not.")
	fs.BoolVar(&o.ShowVersion, "version", o.ShowVersion, "Print the version and exit.")
	fs.Func("excluded-namespaces", "Comma-separated namespaces never meshed (default "+
		strings.Join(o.Mesh.ExcludedNamespaces, ",")+"); keep in sync with the webhook's namespaceSelector.",
		func(v string) error {
			o.Mesh.ExcludedNamespaces = splitList(v)
			return nil
		})
	fs.Func("bridge-policy", `What to do with a bridge binding on the pod network: "masquerade" (switch it, default) or "deny".`,
		func(v string) error { o.Webhook.BridgePolicy = vmwebhook.BridgePolicy(v); return nil })
	fs.Int64Var(&o.Webhook.MaxRequestBytes, "webhook-max-request-bytes", o.Webhook.MaxRequestBytes,
		"Largest admission review the webhook reads (the API server sends objects of at most 3 MiB); larger ones are refused unread.")
	fs.Int64Var(&o.Webhook.MaxInFlightBytes, "webhook-max-in-flight-bytes", o.Webhook.MaxInFlightBytes,
		"Bytes of admission reviews the webhook handles at once (each costs up to about 15 times its size while decoded); more wait.")
	fs.Func("ambient-policy", `What to do with VMIs in ambient namespaces: "sidecar" (give them a sidecar, default) or "ignore".`,
		func(v string) error { o.Mesh.AmbientPolicy = mesh.AmbientPolicy(v); return nil })
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Validate reports every invalid option at once, so a bad Deployment fails
// fast with a message that names each flag to fix.
func (o *Options) Validate() error {
	var errs []error
	if o.WebhookPort < 1 || o.WebhookPort > 65535 {
		errs = append(errs, fmt.Errorf("--webhook-port must be between 1 and 65535, got %d", o.WebhookPort))
	}
	if o.EnableWebhook && o.WebhookCertDir == "" {
		errs = append(errs, errors.New("--webhook-cert-dir must not be empty while the webhook is enabled"))
	}
	if err := validateBindAddress("--metrics-bind-address", o.MetricsBindAddress); err != nil {
		errs = append(errs, err)
	}
	if err := validateBindAddress("--health-probe-bind-address", o.HealthProbeBindAddress); err != nil {
		errs = append(errs, err)
	}
	if err := o.Mesh.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.EnableWebhook {
		if err := o.Webhook.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if o.CertRotation && o.EnableWebhook {
		for flag, v := range map[string]string{"--cert-namespace": o.CertNamespace, "--cert-secret-name": o.CertSecretName,
			"--webhook-service-name": o.WebhookServiceName, "--webhook-configuration-name": o.WebhookConfigurationName} {
			if v == "" {
				errs = append(errs, fmt.Errorf("%s must not be empty with --cert-rotation", flag))
			}
		}
	}
	if o.EnableControllers {
		if err := o.Controllers.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if o.GracefulShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("--graceful-shutdown-timeout must not be negative, got %s", o.GracefulShutdownTimeout))
	}
	if o.ShutdownDelay < 0 {
		errs = append(errs, fmt.Errorf("--shutdown-delay must not be negative, got %s", o.ShutdownDelay))
	}
	return errors.Join(errs...)
}

// validateBindAddress accepts "0" (disabled), "" (disabled) or host:port.
func validateBindAddress(flagName, addr string) error {
	if addr == "" || addr == "0" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s must be host:port or \"0\", got %q: %w", flagName, addr, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%s has an invalid port in %q", flagName, addr)
	}
	return nil
}

// existingVMIsFlag is --existing-vmis: a policy name, checked with the other
// flags (Validate), so that every invalid flag is reported at once.
type existingVMIsFlag struct{ p *mesh.ExistingVMIs }

func (f existingVMIsFlag) String() string {
	if f.p == nil {
		return ""
	}
	return string(*f.p)
}

func (f existingVMIsFlag) Set(s string) error {
	p, err := mesh.ParseExistingVMIs(s)
	if err != nil {
		p = mesh.ExistingVMIs(s)
	}
	*f.p = p
	return nil
}

func (existingVMIsFlag) Type() string { return "pin|onboard|ignore" }
