package webhook

import (
	"fmt"
	"slices"
	"strings"

	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// Change names one kind of change, as recorded in mesh.MutationsAnnotation.
type Change string

// The changes, in the order they are recorded.
const (
	ChangeInject  Change = "inject"
	ChangeBinding Change = "binding"
	ChangeAmbient Change = "ambient"
	ChangeApp     Change = "app"
	ChangeVersion Change = "version"
	// ChangeOptOut: a VMI that cannot join the mesh was labelled inject=false.
	ChangeOptOut Change = "opt-out"
	// ChangeReroute: the masquerade interface is named for Istio 1.25+.
	ChangeReroute Change = "reroute"
)

var changeOrder = []Change{ChangeInject, ChangeBinding, ChangeAmbient, ChangeReroute, ChangeApp, ChangeVersion, ChangeOptOut}

// Namespace is what the mutation needs to know of the VMI's namespace.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Env is what the mutation knows besides the VMI: its namespace and, for a
// VMI a VirtualMachine owns, that VirtualMachine (nil if unknown).
type Env struct {
	Namespace Namespace
	VM        *kubevirtv1.VirtualMachine
}

// Result is the outcome of MutateVMI.
type Result struct {
	// Denied is set when the VMI must be refused; Reason says why.
	Denied bool
	Reason string
	// Changes lists what was changed, in changeOrder.
	Changes []Change
	// Warnings are shown to the VM owner by kubectl, in plain words.
	Warnings []string
}

// MutateVMI makes vmi Istio-ready in place if it belongs in the mesh. It is a
// pure function of its inputs, and idempotent: a mutated VMI is left as it is.
func MutateVMI(vmi *kubevirtv1.VirtualMachineInstance, env Env, meshCfg mesh.Config, cfg Config) Result {
	ns := env.Namespace
	d := mesh.Decide(ns.Name, ns.Labels, vmi.Labels, vmi.Annotations, meshCfg)
	if d.Denied {
		return Result{Denied: true, Reason: "virtmesh: " + d.Reason()}
	}
	if !d.InMesh {
		return Result{}
	}
	m := &mutator{vmi: vmi, vm: env.VM, decision: d, namespace: ns.Name}
	if why := m.ensurePodNetwork(cfg.BridgePolicy); why != "" {
		return m.notMeshable(why)
	}
	if denied := m.ensureInjection(d.Ambient); denied != "" {
		return Result{Denied: true, Reason: denied}
	}
	m.ensureReroute()
	m.ensureTelemetryLabels()
	m.recordChanges()
	return Result{Changes: m.changes, Warnings: m.warnings}
}

// notMeshable handles a VMI the mesh rules put in the mesh that cannot join
// it (no pod network, unsupported binding). The spec is left as written. In
// an enforced namespace it is refused. Where Istio would give its pod a proxy
// anyway (its namespace-level or revision entries), it is labelled
// inject=false (unless its owner chose an inject value): KubeVirt's Istio
// networking could not serve that proxy.
func (m *mutator) notMeshable(why string) Result {
	switch {
	case m.denied != "":
		return Result{Denied: true, Reason: m.denied, Warnings: m.warnings}
	case m.decision.Enforced:
		return Result{Denied: true, Reason: fmt.Sprintf("virtmesh: namespace %q is labelled %s=true, so its VMs must join the mesh, but %s",
			m.namespace, mesh.EnforceLabel, why)}
	}
	m.warn("%s", why)
	// An owner's own value stays; an empty label reads as unset to Istio.
	if m.vmi.Labels[mesh.InjectKey] == "" && (m.decision.ByNamespace() || m.vmi.Labels[mesh.RevisionLabel] != "") {
		setLabel(m.vmi, mesh.InjectKey, "false")
		m.changed(ChangeOptOut, "set label %s=\"false\" so Istio's injector gives this VM's pod no proxy "+
			"(KubeVirt could not serve one); the VM starts outside the mesh", mesh.InjectKey)
		m.recordChanges()
	}
	return Result{Changes: m.changes, Warnings: m.warnings}
}

// mutator accumulates the changes and warnings of one MutateVMI call.
type mutator struct {
	vmi       *kubevirtv1.VirtualMachineInstance
	vm        *kubevirtv1.VirtualMachine // the VMI's VirtualMachine, if known
	decision  mesh.Decision
	namespace string
	changes   []Change
	warnings  []string
	denied    string
}

func (m *mutator) changed(c Change, format string, args ...any) {
	if !slices.Contains(m.changes, c) {
		m.changes = append(m.changes, c)
	}
	m.warn(format, args...)
}

func (m *mutator) warn(format string, args ...any) {
	m.warnings = append(m.warnings, "virtmesh: "+fmt.Sprintf(format, args...))
}

// ensureInjection sets the inject label Istio reads and the annotation
// KubeVirt reads (its Istio networking turns on only for "true", any case),
// never changing a value the owner set. It returns why the VMI must be
// refused when the owner's annotation would leave KubeVirt's networking off.
func (m *mutator) ensureInjection(ambient bool) (denied string) {
	anno, hasAnno := m.vmi.Annotations[mesh.InjectKey]
	if hasAnno && anno != "" && !strings.EqualFold(anno, "true") {
		return fmt.Sprintf("virtmesh: the VMI's annotation %s is %q, but KubeVirt turns on its Istio networking only for \"true\", "+
			"so the VM would start with a proxy it cannot serve; set the annotation to \"true\" or remove it", mesh.InjectKey, anno)
	}
	var added []string
	if _, set := m.vmi.Labels[mesh.InjectKey]; !set {
		setLabel(m.vmi, mesh.InjectKey, "true")
		added = append(added, "label")
	}
	if anno == "" {
		setAnnotation(m.vmi, mesh.InjectKey, "true")
		added = append(added, "annotation")
	}
	if len(added) > 0 {
		m.changed(ChangeInject, "added %s %s=\"true\" (%s)", strings.Join(added, " and "), mesh.InjectKey, m.decision.Reason())
	}
	if ambient && m.vmi.Labels[mesh.DataplaneModeLabel] != mesh.DataplaneModeNone {
		setLabel(m.vmi, mesh.DataplaneModeLabel, mesh.DataplaneModeNone)
		m.changed(ChangeAmbient, "set label %s=%s: KubeVirt does not support ambient mode "+
			"(kubevirt/kubevirt#18871), so this VM gets an Istio sidecar instead", mesh.DataplaneModeLabel, mesh.DataplaneModeNone)
	}
	return ""
}

// ensureReroute names KubeVirt's masquerade bridge for Istio 1.25 and newer,
// which no longer reads the annotation KubeVirt before 1.7 sets
// (traffic.sidecar.istio.io/kubevirtInterfaces): without it, such a VM's
// inbound traffic is not redirected. The VMI's annotations reach its pod.
// KubeVirt 1.7+ sets the same value itself, and older Istio ignores it, so it
// is set on every meshed masquerade VMI whatever the versions.
func (m *mutator) ensureReroute() {
	iface := mesh.PodInterface(&m.vmi.Spec)
	if iface == nil || iface.Masquerade == nil {
		return
	}
	if _, set := m.vmi.Annotations[mesh.RerouteAnnotation]; set {
		return // the owner's (or KubeVirt's) own
	}
	setAnnotation(m.vmi, mesh.RerouteAnnotation, mesh.KubeVirtMasqueradeBridge)
	m.changed(ChangeReroute, "added annotation %s=%s: Istio 1.25+ redirects only the interfaces it names, "+
		"and KubeVirt before 1.7 names them the old way", mesh.RerouteAnnotation, mesh.KubeVirtMasqueradeBridge)
}

// recordChanges merges this call's changes into the mutations annotation, so a
// reinvocation never forgets what an earlier call did.
func (m *mutator) recordChanges() {
	if len(m.changes) == 0 {
		return
	}
	seen := map[Change]bool{}
	for _, c := range strings.Split(m.vmi.Annotations[mesh.MutationsAnnotation], ",") {
		seen[Change(strings.TrimSpace(c))] = true
	}
	for _, c := range m.changes {
		seen[c] = true
	}
	var all []string
	for _, c := range changeOrder {
		if seen[c] {
			all = append(all, string(c))
		}
	}
	setAnnotation(m.vmi, mesh.MutationsAnnotation, strings.Join(all, ","))
	slices.SortStableFunc(m.changes, func(a, b Change) int {
		return slices.Index(changeOrder, a) - slices.Index(changeOrder, b)
	})
}

func setLabel(vmi *kubevirtv1.VirtualMachineInstance, k, v string) {
	if vmi.Labels == nil {
		vmi.Labels = map[string]string{}
	}
	vmi.Labels[k] = v
}

func setAnnotation(vmi *kubevirtv1.VirtualMachineInstance, k, v string) {
	if vmi.Annotations == nil {
		vmi.Annotations = map[string]string{}
	}
	vmi.Annotations[k] = v
}
