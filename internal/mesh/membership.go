package mesh

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
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
	var errs []error
	switch c.AmbientPolicy {
	case AmbientSidecar, AmbientIgnore:
	default:
		errs = append(errs, fmt.Errorf("--ambient-policy must be sidecar or ignore, got %q", c.AmbientPolicy))
	}
	for _, ns := range c.ExcludedNamespaces {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--excluded-namespaces: %q is not a namespace name: %s", ns, strings.Join(msgs, "; ")))
		}
	}
	return errors.Join(errs...)
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
	// Enforced: the namespace is in the mesh and labelled virtmesh.io/enforce=true,
	// so a VMI that cannot join the mesh is refused too.
	Enforced bool

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
	whyObjectInjectNotExact
	whyAmbientDataplaneNone
	whyRevisionEmpty
)

// ByNamespace reports whether the VMI is in the mesh through its namespace's
// istio-injection or istio.io/rev label, so Istio's namespace-level
// injector gives its pod a proxy unless the pod opts out.
func (d Decision) ByNamespace() bool {
	return d.why == whyNamespaceEnabled || d.why == whyNamespaceRevision
}

// Excluded reports whether virtmesh's configuration excludes the namespace:
// virtmesh changes nothing there, whatever Istio does.
func (d Decision) Excluded() bool { return d.why == whyExcluded }

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
		return fmt.Sprintf("namespace %q is labelled %s=true, so its VMs cannot stay out of the mesh, but %s: "+
			"remove that label (or annotation) from the VMI", d.ns, EnforceLabel, d.value)
	case whyOptOut:
		return fmt.Sprintf("the VMI opts out with %s=%s", InjectKey, d.value)
	case whyObjectInjectNotExact:
		return fmt.Sprintf("the VMI is labelled %s=%s, but in a namespace without an Istio injection label Istio injects only "+
			"pods labelled exactly %s=true", InjectKey, d.value, InjectKey)
	case whyRevisionEmpty:
		return fmt.Sprintf("the %s label (on namespace %q or the VMI) is empty, and no Istio revision injects pods for an empty revision", RevisionLabel, d.ns)
	case whyAmbientDataplaneNone:
		return fmt.Sprintf("namespace %q is in ambient mode and the VMI opts out of it with %s=%s", d.ns, DataplaneModeLabel, DataplaneModeNone)
	case whyObjectInject:
		return fmt.Sprintf("the VMI is labelled %s=true", InjectKey)
	case whyObjectRevision:
		return fmt.Sprintf("the VMI is labelled %s=%s", RevisionLabel, d.value)
	default:
		return fmt.Sprintf("namespace %q has no Istio injection label", d.ns)
	}
}

// Decide applies Istio's injection rules to a VMI's labels and annotations in
// a namespace with the given name and labels. The inject value is read as
// Istio reads it (see InjectValue); the namespace-level webhook entries and
// this function agree on every value (webhook/config_test.go).
func Decide(nsName string, nsLabels, labels, annotations map[string]string, cfg Config) Decision {
	ns := namespaceDefault(nsName, nsLabels, cfg)
	if ns.why == whyExcluded {
		return ns
	}
	ns.Enforced = ns.InMesh && nsLabels[EnforceLabel] == "true"
	d := decideVMI(ns, nsLabels, labels, annotations)
	if ns.Enforced && !d.InMesh {
		// Only the per-VMI way out is left here, and enforce closes it.
		return Decision{Denied: true, Enforced: true, why: whyEnforced, ns: nsName, value: d.Reason()}
	}
	return d
}

func decideVMI(ns Decision, nsLabels, labels, annotations map[string]string) Decision {
	if v, set := InjectValue(labels, annotations); set && !Truthy(v) {
		return Decision{why: whyOptOut, ns: ns.ns, value: v}
	}
	switch {
	case ns.why == whyAmbient:
		return decideAmbient(ns, labels)
	case ns.InMesh:
		return ns
	}
	_, revSet := nsLabels[RevisionLabel]
	if _, set := nsLabels[NamespaceInjectionLabel]; set || revSet {
		// istio-injection=disabled (or any value but enabled) wins over any opt-in.
		return ns
	}
	return decideObject(ns, labels)
}

// decideAmbient: in an ambient namespace Istio injects a sidecar only by its
// per-object rules; virtmesh gives one to every other VMI (KubeVirt does not
// support ambient), except those that carry an inject label of their own or
// leave ambient with istio.io/dataplane-mode=none.
func decideAmbient(ns Decision, labels map[string]string) Decision {
	ns.Ambient = true
	if rev, set := labels[RevisionLabel]; set && rev != "" {
		return ns // Istio's revision entry injects it (opt-outs are handled already)
	} else if set {
		return Decision{why: whyRevisionEmpty, ns: ns.ns}
	}
	v, set := labels[InjectKey]
	switch {
	case set && v != "true":
		return Decision{why: whyObjectInjectNotExact, ns: ns.ns, value: v}
	case !set && labels[DataplaneModeLabel] == DataplaneModeNone:
		return Decision{why: whyAmbientDataplaneNone, ns: ns.ns}
	}
	return ns
}

// decideObject: a namespace without injection labels meshes a VMI that opts
// in itself, as Istio's object-selector entries do: label exactly "true", or
// an istio.io/rev label. (An ambient namespace under --ambient-policy=ignore
// comes here too.)
func decideObject(ns Decision, labels map[string]string) Decision {
	v, set := labels[InjectKey]
	rev, revSet := labels[RevisionLabel]
	switch {
	case rev != "":
		return Decision{InMesh: true, why: whyObjectRevision, ns: ns.ns, value: rev}
	case revSet:
		// Istio's per-object entry wants no istio.io/rev label, its
		// revision entry a known revision: an empty one gets neither.
		return Decision{why: whyRevisionEmpty, ns: ns.ns}
	case v == "true":
		return Decision{InMesh: true, why: whyObjectInject, ns: ns.ns}
	case set:
		return Decision{why: whyObjectInjectNotExact, ns: ns.ns, value: v}
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
	if rev, set := nsLabels[RevisionLabel]; set && rev != "" {
		return Decision{InMesh: true, why: whyNamespaceRevision, ns: nsName, value: rev}
	} else if set {
		return Decision{why: whyRevisionEmpty, ns: nsName}
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
	_, rev := nsLabels[RevisionLabel]
	return nsLabels[DataplaneModeLabel] == DataplaneModeAmbient && !inj && !rev
}

// InjectValue is the inject value Istio reads: the label wins; the
// (deprecated) annotation counts only when no label is set. An empty value
// counts as unset: the namespace's default applies.
func InjectValue(labels, annotations map[string]string) (string, bool) {
	v, ok := labels[InjectKey]
	if !ok {
		v = annotations[InjectKey]
	}
	return v, v != ""
}

// Truthy reads an inject value as Istio does (YAML 1.1 booleans): y, yes,
// true and on, in any case, mean inject; any other non-empty value means do
// not inject.
func Truthy(v string) bool {
	switch strings.ToLower(v) {
	case "y", "yes", "true", "on":
		return true
	}
	return false
}
