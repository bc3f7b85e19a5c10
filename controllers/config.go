package controllers

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// NADMode says whether virtmesh manages istio-cni NetworkAttachmentDefinitions.
type NADMode string

const (
	// NADAuto reads the Istio injector that would inject a namespace's VMs and
	// does what its flavour needs: a per-namespace NAD only where the injector
	// references one nobody else creates; for a shared NAD (Istio 1.19+,
	// OpenShift Service Mesh 3) or Maistra's, it checks and reports.
	NADAuto NADMode = "auto"
	// NADPerNamespace keeps one in every mesh namespace (Multus clusters).
	NADPerNamespace NADMode = "per-namespace"
	// NADOff leaves them alone (clusters without Multus, or managed elsewhere).
	NADOff NADMode = "off"
)

// DefaultNADName is what Istio's CNI plugin expects on Multus clusters;
// OpenShift Service Mesh 2.x uses versioned names such as v2-5-istio-cni.
const DefaultNADName = "istio-cni"

// Config configures the controllers.
type Config struct {
	NADMode NADMode
	NADName string
	// IstioNamespaces are where injector ConfigMaps are read (--cni-nad=auto).
	IstioNamespaces []string
	// ReadableIstioNamespaces are those of IstioNamespaces RBAC lets virtmesh
	// read (see ReadableIstioNamespaces); nil means all of them.
	ReadableIstioNamespaces []string
	// NADCleanupDelay is how long one of virtmesh's NADs stays after it
	// became unneeded before it is deleted, so a flapping injector or label
	// does not delete a NAD pods are about to reference.
	NADCleanupDelay time.Duration
	// Workers is how many namespaces (NADs) or apps (Services) are reconciled at once.
	Workers int
	// SyncPeriod is how often the informers resync: every Service and NAD
	// virtmesh holds is reconciled again even without a change (resyncs of
	// VMs and VMIs reconcile nothing more).
	SyncPeriod time.Duration
	// ExistingVMIs is what is done with VMIs that were running before their
	// namespace joined the mesh (a namespace's mesh.ExistingVMIsLabel
	// overrides it there).
	ExistingVMIs mesh.ExistingVMIs
	// OnboardingConcurrency is how many onboarding migrations run at once
	// in the cluster (one per namespace).
	OnboardingConcurrency int
	// OnboardingRetryDelay is the wait after an onboarding migration first
	// fails; it doubles with each failure.
	OnboardingRetryDelay time.Duration
}

// readableIstioNamespaces are the Istio namespaces whose ConfigMaps are watched.
func (c Config) readableIstioNamespaces() []string {
	if c.ReadableIstioNamespaces == nil {
		return c.IstioNamespaces
	}
	return c.ReadableIstioNamespaces
}

// DefaultConfig is what the manager runs with by default.
func DefaultConfig() Config {
	return Config{NADMode: NADAuto, NADName: DefaultNADName, IstioNamespaces: []string{"istio-system"}, NADCleanupDelay: time.Minute, Workers: 4, SyncPeriod: 10 * time.Hour,
		ExistingVMIs: mesh.ExistingPin, OnboardingConcurrency: 2, OnboardingRetryDelay: time.Minute}
}

// Validate names each controller flag that is wrong; the shared membership
// configuration (mesh.Config) is checked by its own Validate.
func (c Config) Validate() error {
	var errs []error
	switch c.NADMode {
	case NADAuto, NADPerNamespace, NADOff:
	default:
		errs = append(errs, fmt.Errorf("--cni-nad must be %q, %q or %q, got %q", NADAuto, NADPerNamespace, NADOff, c.NADMode))
	}
	if c.NADMode == NADAuto {
		if len(c.IstioNamespaces) == 0 {
			errs = append(errs, errors.New("--istio-namespaces must name at least one namespace with --cni-nad=auto"))
		}
		for _, ns := range c.IstioNamespaces {
			for _, e := range validation.IsDNS1123Label(ns) {
				errs = append(errs, fmt.Errorf("--istio-namespaces: %q is not a namespace name: %s", ns, e))
			}
		}
	}
	if c.NADMode != NADOff {
		for _, e := range validation.IsDNS1123Subdomain(c.NADName) {
			errs = append(errs, fmt.Errorf("--cni-nad-name %q is not a valid object name: %s", c.NADName, e))
		}
	}
	if c.NADCleanupDelay < 0 {
		errs = append(errs, fmt.Errorf("--nad-cleanup-delay must not be negative, got %s", c.NADCleanupDelay))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("--controller-workers must be at least 1, got %d", c.Workers))
	}
	if _, err := mesh.ParseExistingVMIs(string(c.ExistingVMIs)); err != nil {
		errs = append(errs, fmt.Errorf("--existing-vmis: %w", err))
	}
	if c.OnboardingConcurrency < 1 {
		errs = append(errs, fmt.Errorf("--onboarding-concurrency must be at least 1, got %d", c.OnboardingConcurrency))
	}
	if c.OnboardingRetryDelay < time.Second {
		errs = append(errs, fmt.Errorf("--onboarding-retry-delay must be at least 1s, got %s", c.OnboardingRetryDelay))
	}
	if c.SyncPeriod < time.Second {
		errs = append(errs, fmt.Errorf("--sync-period must be at least 1s, got %s", c.SyncPeriod))
	}
	return errors.Join(errs...)
}
