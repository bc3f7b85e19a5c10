// Package onboard holds the pure decisions and changes for VMIs that were
// running before their namespace joined the mesh: pinning them out of it,
// and bringing them in by a live migration. The controllers and kubectl
// virtmesh onboard share it, so both do exactly the same thing.
//
// Why: a live migration renders the target launcher pod from the VMI's
// current labels and annotations, and virt-handler reads the current VMI to
// decide whether KubeVirt's Istio networking is on. A VMI created without
// the inject annotation in a namespace later labelled for injection gets a
// target pod with a proxy KubeVirt does not serve: the pod never becomes
// Ready. Labelling the VMI sidecar.istio.io/inject=false (a pin) keeps its
// migrations out of the mesh; giving it the inject label and annotation and
// then migrating it brings it in without a restart.
package onboard

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
	vmwebhook "github.com/virtmesh/virtmesh/webhook"
)

// MigrationLabel marks the VirtualMachineInstanceMigrations virtmesh creates
// to onboard a VMI; its value is the VMI's UID.
const MigrationLabel = "virtmesh.io/onboarding-vmi-uid"

// PinnedByVirtmesh reports whether virtmesh's pin is on vmi: its annotation,
// and the inject label still "false" as virtmesh set it.
func PinnedByVirtmesh(vmi *kubevirtv1.VirtualMachineInstance) bool {
	return vmi.Annotations[mesh.PinnedAnnotation] != "" && vmi.Labels[mesh.InjectKey] == "false"
}

// OwnerChose reports whether the VMI's owner set an inject value themselves
// (a label or an annotation virtmesh did not place): such a VMI is never
// pinned or changed.
func OwnerChose(vmi *kubevirtv1.VirtualMachineInstance) bool {
	if PinnedByVirtmesh(vmi) {
		_, anno := vmi.Annotations[mesh.InjectKey]
		return anno
	}
	_, set := mesh.InjectValue(vmi.Labels, vmi.Annotations)
	return set
}

// Pin labels vmi sidecar.istio.io/inject=false and marks the pin as
// virtmesh's (with the time), in place.
func Pin(vmi *kubevirtv1.VirtualMachineInstance, now time.Time) {
	setLabel(vmi, mesh.InjectKey, "false")
	setAnnotation(vmi, mesh.PinnedAnnotation, now.UTC().Format(time.RFC3339))
}

// Unpin removes virtmesh's pin, in place; a value the owner has changed
// since stays.
func Unpin(vmi *kubevirtv1.VirtualMachineInstance) {
	if PinnedByVirtmesh(vmi) {
		delete(vmi.Labels, mesh.InjectKey)
	}
	delete(vmi.Annotations, mesh.PinnedAnnotation)
}

// Repin ends an onboarding that did not bring vmi in: the inject annotation
// the onboarding added goes (KubeVirt would read "true" over the label), the
// pin comes back. The telemetry labels stay: harmless outside the mesh.
func Repin(vmi *kubevirtv1.VirtualMachineInstance, now time.Time) {
	if strings.EqualFold(vmi.Annotations[mesh.InjectKey], "true") {
		delete(vmi.Annotations, mesh.InjectKey)
	}
	delete(vmi.Annotations, mesh.OnboardingAnnotation)
	Pin(vmi, now)
	// Not onboarded again by itself: kubectl virtmesh onboard can.
	vmi.Annotations[mesh.PinnedAnnotation] = mesh.PinAbandonedPrefix + vmi.Annotations[mesh.PinnedAnnotation]
}

// StartedRecently reports whether an onboarding started by kubectl virtmesh
// onboard may still be creating its migration (the command creates it right
// after the update). A start time in the future beyond clock skew is not
// believed: anyone who may annotate the VMI could write one.
func StartedRecently(o mesh.OnboardingStatus, now time.Time) bool {
	age := now.Sub(o.Started.Time)
	return age > -CLIGrace && age < CLIGrace
}

// CLIGrace is how long virtmesh waits for the migration of an onboarding
// kubectl virtmesh onboard started.
const CLIGrace = time.Minute

// Finish ends an onboarding whose migration succeeded, in place.
func Finish(vmi *kubevirtv1.VirtualMachineInstance) {
	delete(vmi.Annotations, mesh.OnboardingAnnotation)
	delete(vmi.Annotations, mesh.PinnedAnnotation)
}

// Migratable says whether vmi can join the mesh by a live migration now, and
// if not, why (in words for the owner) and whether only a restart can do it.
func Migratable(vmi *kubevirtv1.VirtualMachineInstance) (ok, restartOnly bool, why string) {
	iface := mesh.PodInterface(&vmi.Spec)
	switch {
	case iface == nil:
		return false, false, "it has no pod network"
	case iface.Masquerade == nil:
		_, binding := mesh.RunningBindingSupported(&vmi.Spec)
		if binding == "" {
			binding = "a binding other than masquerade"
		}
		return false, true, "its pod network is bound as " + binding + ", so only a restart brings it in " +
			"(bridge cannot live-migrate; passt fixes its Istio port exclusions when the VM starts)"
	case vmi.Status.Phase != kubevirtv1.Running:
		return false, false, fmt.Sprintf("it is not running (phase %s)", vmi.Status.Phase)
	case conditionTrue(vmi, kubevirtv1.VirtualMachineInstancePaused):
		return false, false, "it is paused"
	case !conditionTrue(vmi, kubevirtv1.VirtualMachineInstanceIsMigratable):
		return false, true, "it cannot live-migrate (its LiveMigratable condition is not True" + conditionReason(vmi, kubevirtv1.VirtualMachineInstanceIsMigratable) + ")"
	case Migrating(vmi):
		return false, false, "a live migration of it is already running"
	}
	return true, false, ""
}

// Migrating reports whether a live migration of vmi was handed to its target
// and has not ended. KubeVirt records the migration on the VMI at the handoff,
// before it sets StartTimestamp; a migration whose target pod is still being
// created is not on the VMI yet (TargetPodPending finds those).
func Migrating(vmi *kubevirtv1.VirtualMachineInstance) bool {
	m := vmi.Status.MigrationState
	return m != nil && m.MigrationUID != "" && !m.Completed && !m.Failed
}

// TargetPodPending names a launcher pod of vmi, other than its active one,
// that has not finished: the target of a migration not handed off yet. Its
// pod was rendered from the VMI's labels and annotations as they were, so
// changing them now would leave KubeVirt's Istio networking and that pod's
// proxy disagreeing once the VM moves there. pods are vmi's launcher pods.
func TargetPodPending(vmi *kubevirtv1.VirtualMachineInstance, pods []*corev1.Pod) string {
	for _, p := range mesh.OtherPods(mesh.ActivePod(vmi, pods), pods) {
		return p.Name
	}
	return ""
}

func conditionTrue(vmi *kubevirtv1.VirtualMachineInstance, t kubevirtv1.VirtualMachineInstanceConditionType) bool {
	for _, c := range vmi.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func conditionReason(vmi *kubevirtv1.VirtualMachineInstance, t kubevirtv1.VirtualMachineInstanceConditionType) string {
	for _, c := range vmi.Status.Conditions {
		if c.Type == t && c.Reason != "" {
			return ": " + c.Reason
		}
	}
	return ""
}

// Joins says whether a live migration of vmi now brings it into the mesh
// consistently, and if not why: its new pod must get a proxy (Istio's rules
// with its labels as they are) that KubeVirt serves (the inject annotation),
// and without the inject values onboarding gave it the VMI must still belong
// in the mesh (its namespace did not leave it and is not excluded).
// virtmesh checks it before every migration it creates for an onboarding
// annotation, which anyone who may update the VMI can write.
func Joins(vmi *kubevirtv1.VirtualMachineInstance, nsLabels map[string]string, cfg mesh.Config) (bool, string) {
	if !mesh.KubeVirtIstioOn(vmi) {
		return false, "it lacks the annotation " + mesh.InjectKey + `="true" onboarding gives it, so its new pod would get a proxy KubeVirt does not serve`
	}
	if d := mesh.Decide(vmi.Namespace, nsLabels, vmi.Labels, vmi.Annotations, cfg); !d.InMesh {
		return false, "with its labels, Istio would not give its new pod a sidecar: " + d.Reason()
	}
	labels, annotations := without(vmi.Labels, mesh.InjectKey), without(vmi.Annotations, mesh.InjectKey)
	if d := mesh.Decide(vmi.Namespace, nsLabels, labels, annotations, cfg); !d.InMesh || d.Excluded() {
		return false, "its namespace is no longer in the mesh for VMs: " + d.Reason()
	}
	return true, ""
}

func without(m map[string]string, key string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if k != key {
			out[k] = v
		}
	}
	return out
}

// MigrationPrefix starts the name of every onboarding migration of vmi: a
// new VMI of the same name has another.
func MigrationPrefix(vmi *kubevirtv1.VirtualMachineInstance) string {
	sum := sha256.Sum256([]byte(vmi.UID))
	name := vmi.Name
	if len(name) > 24 {
		name = strings.TrimRight(name[:24], "-.")
	}
	return "virtmesh-onboard-" + name + "-" + hex.EncodeToString(sum[:])[:8] + "-"
}

// MigrationName names the migration of an onboarding attempt started at at.
// It is recorded in the VMI's onboarding annotation before the migration is
// created, so a restarted virtmesh creates that one and never a second.
func MigrationName(vmi *kubevirtv1.VirtualMachineInstance, attempt int, at time.Time) string {
	return MigrationPrefix(vmi) + strconv.Itoa(attempt) + "-" + strconv.FormatInt(at.Unix(), 36)
}

// Ours reports whether name is an onboarding migration name of vmi (an
// annotation anyone could write must not point virtmesh elsewhere).
func Ours(vmi *kubevirtv1.VirtualMachineInstance, name string) bool {
	return strings.HasPrefix(name, MigrationPrefix(vmi))
}

// Migration is the migration named name, of vmi.
func Migration(vmi *kubevirtv1.VirtualMachineInstance, name string) *kubevirtv1.VirtualMachineInstanceMigration {
	return &kubevirtv1.VirtualMachineInstanceMigration{
		TypeMeta: metav1.TypeMeta{APIVersion: kubevirtv1.GroupVersion.String(), Kind: "VirtualMachineInstanceMigration"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: vmi.Namespace,
			Labels: map[string]string{MigrationLabel: string(vmi.UID), mesh.ManagedByLabel: mesh.ManagedByValue},
			// Gone with the VMI. Not blocking its deletion: that would need
			// rights on virtualmachineinstances/finalizers.
			OwnerReferences: []metav1.OwnerReference{{APIVersion: kubevirtv1.GroupVersion.String(), Kind: "VirtualMachineInstance",
				Name: vmi.Name, UID: vmi.UID}}},
		Spec: kubevirtv1.VirtualMachineInstanceMigrationSpec{VMIName: vmi.Name},
	}
}

// Prepare gives vmi (read whole from the API server, never a trimmed cached
// copy) the metadata the webhook gives a new meshed VMI, by the webhook's own
// mutation, removes virtmesh's pin, and records the onboarding attempt:
// everything in one update of labels and annotations. It refuses, saying
// why, when the mutation would change the spec (a running VMI's spec cannot
// change) or the VMI would not be in the mesh.
func Prepare(vmi *kubevirtv1.VirtualMachineInstance, env vmwebhook.Env, meshCfg mesh.Config, cfg vmwebhook.Config,
	attempt int, by string, now time.Time) error {
	if OwnerChose(vmi) {
		return fmt.Errorf("its owner set %s themselves; virtmesh leaves it as it is", mesh.InjectKey)
	}
	if ok, _, why := Migratable(vmi); !ok {
		return fmt.Errorf("it cannot join by a live migration: %s", why)
	}
	out := vmi.DeepCopy()
	Unpin(out)
	res := vmwebhook.MutateVMI(out, env, meshCfg, cfg)
	switch {
	case res.Denied:
		return fmt.Errorf("the webhook would refuse it: %s", res.Reason)
	case !equality.Semantic.DeepEqual(out.Spec, vmi.Spec):
		return fmt.Errorf("joining would change its spec (%v), which a running VMI cannot: restart it instead", res.Changes)
	case !mesh.KubeVirtIstioOn(out):
		return fmt.Errorf("it would not be in the mesh: %s", mesh.Decide(out.Namespace, env.Namespace.Labels, out.Labels, out.Annotations, meshCfg).Reason())
	}
	setAnnotation(out, mesh.OnboardingAnnotation, Attempt(vmi, attempt, by, now).Encode())
	out.ObjectMeta.DeepCopyInto(&vmi.ObjectMeta)
	return nil
}

// Attempt is the onboarding annotation of attempt number attempt, started now.
func Attempt(vmi *kubevirtv1.VirtualMachineInstance, attempt int, by string, now time.Time) mesh.OnboardingStatus {
	now = now.UTC().Truncate(time.Second)
	return mesh.OnboardingStatus{Attempt: attempt, Migration: MigrationName(vmi, attempt, now), By: by, Started: metav1.NewTime(now)}
}

// Backoff is how long virtmesh waits after failed attempt number attempt
// before the next: base, doubling, at most 64 times base.
func Backoff(base time.Duration, attempt int) time.Duration {
	return base << min(max(attempt-1, 0), 6)
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
