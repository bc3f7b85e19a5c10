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
)

var changeOrder = []Change{ChangeInject, ChangeBinding, ChangeAmbient, ChangeApp, ChangeVersion}

// Namespace is what the mutation needs to know of the VMI's namespace.
type Namespace struct {
	Name   string
	Labels map[string]string
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
func MutateVMI(vmi *kubevirtv1.VirtualMachineInstance, ns Namespace, meshCfg mesh.Config, cfg Config) Result {
	d := mesh.Decide(ns.Name, ns.Labels, vmi.Labels, vmi.Annotations, meshCfg)
	if d.Denied {
		return Result{Denied: true, Reason: "virtmesh: " + d.Reason()}
	}
	if !d.InMesh {
		return Result{}
	}
	m := &mutator{vmi: vmi, decision: d}
	if !m.ensurePodNetwork(cfg.BridgePolicy) {
		// Not meshable, or denied: the VMI is left exactly as it came.
		return Result{Denied: m.denied != "", Reason: m.denied, Warnings: m.warnings}
	}
	m.ensureInjection(d.Ambient)
	m.ensureTelemetryLabels()
	m.recordChanges()
	return Result{Changes: m.changes, Warnings: m.warnings}
}

// mutator accumulates the changes and warnings of one MutateVMI call.
type mutator struct {
	vmi      *kubevirtv1.VirtualMachineInstance
	decision mesh.Decision
	changes  []Change
	warnings []string
	denied   string
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

func (m *mutator) ensureInjection(ambient bool) {
	if m.vmi.Labels[mesh.InjectKey] != "true" || m.vmi.Annotations[mesh.InjectKey] != "true" {
		setLabel(m.vmi, mesh.InjectKey, "true")
		setAnnotation(m.vmi, mesh.InjectKey, "true")
		m.changed(ChangeInject, "added label and annotation %s=\"true\" (%s)", mesh.InjectKey, m.decision.Reason())
	}
	if ambient && m.vmi.Labels[mesh.DataplaneModeLabel] != mesh.DataplaneModeNone {
		setLabel(m.vmi, mesh.DataplaneModeLabel, mesh.DataplaneModeNone)
		m.changed(ChangeAmbient, "set label %s=%s: KubeVirt does not support ambient mode "+
			"(kubevirt/kubevirt#18871), so this VM gets an Istio sidecar instead", mesh.DataplaneModeLabel, mesh.DataplaneModeNone)
	}
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
