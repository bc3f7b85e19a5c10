package mesh

import (
	"fmt"
	"slices"
)

// AmbientPolicy says what to do with VMIs in ambient-mode namespaces, which
// KubeVirt does not support (kubevirt/kubevirt#18871).
type AmbientPolicy string

const (
	// AmbientSidecar gives such VMIs a sidecar and takes them out of ambient.
	AmbientSidecar AmbientPolicy = "sidecar"
	// AmbientIgnore leaves them alone (outside the mesh).
	AmbientIgnore AmbientPolicy = "ignore"
)

// DefaultExcludedNamespaces are never meshed; keep in sync with the
// namespaceSelector in manifests/webhook.
var DefaultExcludedNamespaces = []string{"kube-system", "kube-public", "kube-node-lease", "virtmesh-system", "kubevirt"}

// Config is the part of virtmesh's configuration membership depends on.
type Config struct {
	ExcludedNamespaces []string
	AmbientPolicy      AmbientPolicy
}

// Validate rejects an unknown ambient policy.
func (c Config) Validate() error {
	switch c.AmbientPolicy {
	case AmbientSidecar, AmbientIgnore:
		return nil
	default:
		return fmt.Errorf("--ambient-policy must be sidecar or ignore, got %q", c.AmbientPolicy)
	}
}

// DefaultConfig returns the configuration the manager runs with by default.
func DefaultConfig() Config {
	return Config{ExcludedNamespaces: slices.Clone(DefaultExcludedNamespaces), AmbientPolicy: AmbientSidecar}
}

// Decision is the verdict on one VMI. Its Reason is formatted only when asked
// for: the webhook and the controllers decide far more often than they explain.
type Decision struct {
	// InMesh: the VMI must be made Istio-ready.
	InMesh bool
	// Ambient: it is in the mesh only through the ambient rule, so it must
	// also leave ambient (dataplane-mode=none) to get a sidecar.
	Ambient bool
	// Denied: the VMI opts out in a namespace that forbids it.
	Denied bool

	why   why
	ns    string
	value string
}

// why identifies the rule that made a Decision.
type why uint8

const (
	whyNoLabel why = iota
	whyExcluded
	whyNamespaceEnabled
	whyNamespaceInjectionOther
	whyNamespaceRevision
	whyAmbient
	whyAmbientIgnored
	whyEnforced
	whyOptOut
	whyObjectInject
	whyObjectRevision
)

// Reason says why, in words fit for a warning or a denial.
func (d Decision) Reason() string {
	switch d.why {
	case whyExcluded:
		return fmt.Sprintf("namespace %q is excluded from the mesh by virtmesh's configuration", d.ns)
	case whyNamespaceEnabled:
		return fmt.Sprintf("namespace %q is labelled %s=enabled", d.ns, NamespaceInjectionLabel)
	case whyNamespaceInjectionOther:
		return fmt.Sprintf("namespace %q is labelled %s=%s", d.ns, NamespaceInjectionLabel, d.value)
	case whyNamespaceRevision:
		return fmt.Sprintf("namespace %q is labelled %s=%s", d.ns, RevisionLabel, d.value)
	case whyAmbient:
		return fmt.Sprintf("namespace %q is in ambient mode", d.ns)
	case whyAmbientIgnored:
		return fmt.Sprintf("namespace %q is in ambient mode and --ambient-policy=ignore", d.ns)
	case whyEnforced:
		return fmt.Sprintf("namespace %q is labelled %s=true, so its VMs cannot opt out of the mesh: remove %s=false from the VMI",
			d.ns, EnforceLabel, InjectKey)
	case whyOptOut:
		return fmt.Sprintf("the VMI opts out with %s=false", InjectKey)
	case whyObjectInject:
		return fmt.Sprintf("the VMI is labelled %s=true", InjectKey)
	case whyObjectRevision:
		return fmt.Sprintf("the VMI is labelled %s=%s", RevisionLabel, d.value)
	default:
		return fmt.Sprintf("namespace %q has no Istio injection label", d.ns)
	}
}

// Decide applies Istio's injection rules to a VMI's labels and annotations in
// a namespace with the given name and labels.
func Decide(nsName string, nsLabels, labels, annotations map[string]string, cfg Config) Decision {
	ns := namespaceDefault(nsName, nsLabels, cfg)
	if ns.why == whyExcluded {
		return ns
	}
	if optedOut(labels, annotations) {
		if ns.InMesh && nsLabels[EnforceLabel] == "true" {
			return Decision{Denied: true, why: whyEnforced, ns: nsName}
		}
		return Decision{why: whyOptOut, ns: nsName}
	}
	if ns.InMesh {
		ns.Ambient = ns.why == whyAmbient
		return ns
	}
	if _, set := nsLabels[NamespaceInjectionLabel]; set || nsLabels[RevisionLabel] != "" {
		// istio-injection=disabled (or any value but enabled) wins over any opt-in.
		return ns
	}
	if labels[InjectKey] == "true" {
		return Decision{InMesh: true, why: whyObjectInject, ns: nsName}
	}
	if rev := labels[RevisionLabel]; rev != "" {
		return Decision{InMesh: true, why: whyObjectRevision, ns: nsName, value: rev}
	}
	return ns
}

// NamespaceInMesh reports whether the namespace's labels put its VMIs in the
// mesh by default (without any per-VMI opt-in). The Decision's Ambient is
// set when that is only through the ambient rule.
func NamespaceInMesh(nsName string, nsLabels map[string]string, cfg Config) Decision {
	d := namespaceDefault(nsName, nsLabels, cfg)
	d.Ambient = d.InMesh && d.why == whyAmbient
	return d
}

func namespaceDefault(nsName string, nsLabels map[string]string, cfg Config) Decision {
	if slices.Contains(cfg.ExcludedNamespaces, nsName) {
		return Decision{why: whyExcluded, ns: nsName}
	}
	if v, set := nsLabels[NamespaceInjectionLabel]; set {
		if v == "enabled" {
			return Decision{InMesh: true, why: whyNamespaceEnabled, ns: nsName}
		}
		return Decision{why: whyNamespaceInjectionOther, ns: nsName, value: v}
	}
	if rev := nsLabels[RevisionLabel]; rev != "" {
		return Decision{InMesh: true, why: whyNamespaceRevision, ns: nsName, value: rev}
	}
	if isAmbientOnly(nsLabels) {
		if cfg.AmbientPolicy == AmbientSidecar {
			return Decision{InMesh: true, why: whyAmbient, ns: nsName}
		}
		return Decision{why: whyAmbientIgnored, ns: nsName}
	}
	return Decision{why: whyNoLabel, ns: nsName}
}

// isAmbientOnly: ambient data plane and no sidecar-injection label.
func isAmbientOnly(nsLabels map[string]string) bool {
	_, inj := nsLabels[NamespaceInjectionLabel]
	return nsLabels[DataplaneModeLabel] == DataplaneModeAmbient && !inj && nsLabels[RevisionLabel] == ""
}

// optedOut follows Istio: the inject label wins; the (deprecated) annotation
// counts only when no label is set.
func optedOut(labels, annotations map[string]string) bool {
	if v, ok := labels[InjectKey]; ok {
		return v == "false"
	}
	return annotations[InjectKey] == "false"
}
