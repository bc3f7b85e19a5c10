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

// DefaultConfig returns the configuration the manager runs with by default.
func DefaultConfig() Config {
	return Config{ExcludedNamespaces: slices.Clone(DefaultExcludedNamespaces), AmbientPolicy: AmbientSidecar}
}

// Decision is the verdict on one VMI.
type Decision struct {
	// InMesh: the VMI must be made Istio-ready.
	InMesh bool
	// Ambient: it is in the mesh only through the ambient rule, so it must
	// also leave ambient (dataplane-mode=none) to get a sidecar.
	Ambient bool
	// Denied: the VMI opts out in a namespace that forbids it.
	Denied bool
	// Reason says why, in words fit for a warning or a denial.
	Reason string
}

// Decide applies Istio's injection rules to a VMI's labels and annotations in
// a namespace with the given name and labels.
func Decide(nsName string, nsLabels, labels, annotations map[string]string, cfg Config) Decision {
	nsIn, nsReason := namespaceDefault(nsName, nsLabels, cfg)
	if slices.Contains(cfg.ExcludedNamespaces, nsName) {
		return Decision{Reason: nsReason}
	}
	if optedOut(labels, annotations) {
		if nsIn && nsLabels[EnforceLabel] == "true" {
			return Decision{Denied: true, Reason: fmt.Sprintf(
				"namespace %q is labelled %s=true, so its VMs cannot opt out of the mesh: remove %s=false from the VMI",
				nsName, EnforceLabel, InjectKey)}
		}
		return Decision{Reason: fmt.Sprintf("the VMI opts out with %s=false", InjectKey)}
	}
	if nsIn {
		return Decision{InMesh: true, Ambient: isAmbientOnly(nsLabels), Reason: nsReason}
	}
	if _, set := nsLabels[NamespaceInjectionLabel]; set || nsLabels[RevisionLabel] != "" {
		// istio-injection=disabled (or any value but enabled) wins over any opt-in.
		return Decision{Reason: nsReason}
	}
	if labels[InjectKey] == "true" {
		return Decision{InMesh: true, Reason: fmt.Sprintf("the VMI is labelled %s=true", InjectKey)}
	}
	if rev := labels[RevisionLabel]; rev != "" {
		return Decision{InMesh: true, Reason: fmt.Sprintf("the VMI is labelled %s=%s", RevisionLabel, rev)}
	}
	return Decision{Reason: nsReason}
}

// NamespaceInMesh reports whether the namespace's labels put its VMIs in the
// mesh by default (without any per-VMI opt-in), and why.
func NamespaceInMesh(nsName string, nsLabels map[string]string, cfg Config) (bool, string) {
	return namespaceDefault(nsName, nsLabels, cfg)
}

func namespaceDefault(nsName string, nsLabels map[string]string, cfg Config) (bool, string) {
	if slices.Contains(cfg.ExcludedNamespaces, nsName) {
		return false, fmt.Sprintf("namespace %q is excluded from the mesh by virtmesh's configuration", nsName)
	}
	if v, set := nsLabels[NamespaceInjectionLabel]; set {
		if v == "enabled" {
			return true, fmt.Sprintf("namespace %q is labelled %s=enabled", nsName, NamespaceInjectionLabel)
		}
		return false, fmt.Sprintf("namespace %q is labelled %s=%s", nsName, NamespaceInjectionLabel, v)
	}
	if rev := nsLabels[RevisionLabel]; rev != "" {
		return true, fmt.Sprintf("namespace %q is labelled %s=%s", nsName, RevisionLabel, rev)
	}
	if isAmbientOnly(nsLabels) {
		if cfg.AmbientPolicy == AmbientSidecar {
			return true, fmt.Sprintf("namespace %q is in ambient mode", nsName)
		}
		return false, fmt.Sprintf("namespace %q is in ambient mode and --ambient-policy=ignore", nsName)
	}
	return false, fmt.Sprintf("namespace %q has no Istio injection label", nsName)
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
