package onboard

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
	vmwebhook "github.com/virtmesh/virtmesh/webhook"
)

var now = time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)

// running is a masquerade VMI of VM "db", running and live-migratable,
// created before its namespace joined the mesh.
func running(edits ...func(*kubevirtv1.VirtualMachineInstance)) *kubevirtv1.VirtualMachineInstance {
	vmi := &kubevirtv1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db-x7k2p", Namespace: "vms", UID: "4f1c-uid",
			Labels: map[string]string{"kubevirt.io/vm": "db", mesh.KubeVirtVMNameLabel: "db"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: "db", UID: "vm-uid",
				Controller: ptr.To(true)}}},
		Spec: kubevirtv1.VirtualMachineInstanceSpec{
			Networks: []kubevirtv1.Network{{Name: "default", NetworkSource: kubevirtv1.NetworkSource{Pod: &kubevirtv1.PodNetwork{}}}},
			Domain: kubevirtv1.DomainSpec{Devices: kubevirtv1.Devices{Interfaces: []kubevirtv1.Interface{{Name: "default",
				InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Masquerade: &kubevirtv1.InterfaceMasquerade{}}}}}},
		},
		Status: kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Running, Conditions: []kubevirtv1.VirtualMachineInstanceCondition{
			{Type: kubevirtv1.VirtualMachineInstanceIsMigratable, Status: corev1.ConditionTrue}}},
	}
	for _, e := range edits {
		e(vmi)
	}
	return vmi
}

var (
	enabled = vmwebhook.Env{Namespace: vmwebhook.Namespace{Name: "vms", Labels: map[string]string{mesh.NamespaceInjectionLabel: "enabled"}}}
	pinned  = func(v *kubevirtv1.VirtualMachineInstance) { Pin(v, now) }
)

func TestPinAndUnpin(t *testing.T) {
	vmi := running()
	if OwnerChose(vmi) || PinnedByVirtmesh(vmi) {
		t.Fatal("a VMI without inject values reads as chosen or pinned")
	}
	Pin(vmi, now)
	if vmi.Labels[mesh.InjectKey] != "false" || vmi.Annotations[mesh.PinnedAnnotation] != "2026-12-03T09:00:00Z" {
		t.Fatalf("pin: %v %v", vmi.Labels, vmi.Annotations)
	}
	if !PinnedByVirtmesh(vmi) || OwnerChose(vmi) {
		t.Fatal("virtmesh's pin reads as the owner's choice")
	}
	Unpin(vmi)
	if _, ok := vmi.Labels[mesh.InjectKey]; ok || vmi.Annotations[mesh.PinnedAnnotation] != "" {
		t.Fatalf("unpin left %v %v", vmi.Labels, vmi.Annotations)
	}
	if vmi.Labels[mesh.KubeVirtVMNameLabel] != "db" {
		t.Fatal("unpin removed another label")
	}

	// The owner changed the value after the pin: theirs stays.
	vmi = running(pinned)
	vmi.Labels[mesh.InjectKey] = "true"
	if PinnedByVirtmesh(vmi) || !OwnerChose(vmi) {
		t.Fatal("an owner's value over the pin is not the owner's")
	}
	Unpin(vmi)
	if vmi.Labels[mesh.InjectKey] != "true" {
		t.Fatal("unpin removed the owner's value")
	}

	for name, set := range map[string]func(*kubevirtv1.VirtualMachineInstance){
		"label":      func(v *kubevirtv1.VirtualMachineInstance) { v.Labels[mesh.InjectKey] = "false" },
		"annotation": func(v *kubevirtv1.VirtualMachineInstance) { v.Annotations = map[string]string{mesh.InjectKey: "true"} },
	} {
		if !OwnerChose(running(set)) {
			t.Errorf("an owner's %s reads as no choice", name)
		}
	}
}

func TestMigratable(t *testing.T) {
	for name, tc := range map[string]struct {
		edit        func(*kubevirtv1.VirtualMachineInstance)
		ok, restart bool
		why         string
	}{
		"masquerade, migratable": {edit: func(*kubevirtv1.VirtualMachineInstance) {}, ok: true},
		"bridge": {edit: func(v *kubevirtv1.VirtualMachineInstance) {
			v.Spec.Domain.Devices.Interfaces[0].InterfaceBindingMethod = kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}
		}, restart: true, why: "bound as bridge"},
		"passt": {edit: func(v *kubevirtv1.VirtualMachineInstance) {
			v.Spec.Domain.Devices.Interfaces[0].InterfaceBindingMethod = kubevirtv1.InterfaceBindingMethod{}
			v.Spec.Domain.Devices.Interfaces[0].Binding = &kubevirtv1.PluginBinding{Name: "passt"}
		}, restart: true, why: "bound as passt"},
		"not live-migratable": {edit: func(v *kubevirtv1.VirtualMachineInstance) {
			v.Status.Conditions = []kubevirtv1.VirtualMachineInstanceCondition{{Type: kubevirtv1.VirtualMachineInstanceIsMigratable,
				Status: corev1.ConditionFalse, Reason: "DisksNotLiveMigratable"}}
		}, restart: true, why: "DisksNotLiveMigratable"},
		"paused": {edit: func(v *kubevirtv1.VirtualMachineInstance) {
			v.Status.Conditions = append(v.Status.Conditions, kubevirtv1.VirtualMachineInstanceCondition{
				Type: kubevirtv1.VirtualMachineInstancePaused, Status: corev1.ConditionTrue})
		}, why: "paused"},
		"migrating": {edit: func(v *kubevirtv1.VirtualMachineInstance) {
			v.Status.MigrationState = &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: "m1", StartTimestamp: &metav1.Time{Time: now}}
		}, why: "already running"},
		// KubeVirt records the migration at the handoff, before it starts.
		"handed off, not started": {edit: func(v *kubevirtv1.VirtualMachineInstance) {
			v.Status.MigrationState = &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: "m1", TargetPod: "virt-launcher-x-abcde"}
		}, why: "already running"},
		"migrated before": {edit: func(v *kubevirtv1.VirtualMachineInstance) {
			v.Status.MigrationState = &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: "m1", StartTimestamp: &metav1.Time{Time: now}, Completed: true}
		}, ok: true},
		"failed before": {edit: func(v *kubevirtv1.VirtualMachineInstance) {
			v.Status.MigrationState = &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: "m1", Completed: true, Failed: true}
		}, ok: true},
		"scheduling": {edit: func(v *kubevirtv1.VirtualMachineInstance) { v.Status.Phase = kubevirtv1.Scheduling }, why: "not running"},
	} {
		ok, restart, why := Migratable(running(tc.edit))
		if ok != tc.ok || restart != tc.restart || !strings.Contains(why, tc.why) {
			t.Errorf("%s: got %v, %v, %q; want %v, %v, %q", name, ok, restart, why, tc.ok, tc.restart, tc.why)
		}
	}
}

func TestPrepareGivesTheWebhooksMetadataAndNothingElse(t *testing.T) {
	vmi := running(pinned)
	spec := vmi.Spec.DeepCopy()
	if err := Prepare(vmi, enabled, mesh.DefaultConfig(), vmwebhook.DefaultConfig(), 1, mesh.OnboardedByController, now); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{mesh.InjectKey: "true", mesh.AppLabel: "db"}
	for k, v := range want {
		if vmi.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, vmi.Labels[k], v)
		}
	}
	if vmi.Annotations[mesh.InjectKey] != "true" || vmi.Annotations[mesh.RerouteAnnotation] != mesh.KubeVirtMasqueradeBridge {
		t.Errorf("annotations: %v", vmi.Annotations)
	}
	if _, ok := vmi.Annotations[mesh.PinnedAnnotation]; ok {
		t.Error("the pin annotation stayed")
	}
	o, err := mesh.ParseOnboarding(vmi.Annotations[mesh.OnboardingAnnotation])
	if err != nil || o.Attempt != 1 || o.Migration != MigrationName(vmi, 1, now) || o.By != mesh.OnboardedByController || !o.Started.Equal(&metav1.Time{Time: now}) {
		t.Errorf("onboarding annotation %+v, %v", o, err)
	}
	if !mesh.KubeVirtIstioOn(vmi) {
		t.Error("KubeVirt's Istio networking would stay off")
	}
	if d := (vmwebhook.MutateVMI(vmi.DeepCopy(), enabled, mesh.DefaultConfig(), vmwebhook.DefaultConfig())); len(d.Changes) != 0 {
		t.Errorf("the webhook would still change %v: not the same rule", d.Changes)
	}
	if vmi.Spec.Domain.Devices.Interfaces[0].Masquerade == nil || len(vmi.Spec.Networks) != len(spec.Networks) {
		t.Error("the spec changed")
	}
}

func TestPrepareRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		vmi *kubevirtv1.VirtualMachineInstance
		env vmwebhook.Env
		why string
	}{
		"owner's own value": {vmi: running(func(v *kubevirtv1.VirtualMachineInstance) { v.Labels[mesh.InjectKey] = "false" }),
			env: enabled, why: "its owner set"},
		"bridge": {vmi: running(pinned, func(v *kubevirtv1.VirtualMachineInstance) {
			v.Spec.Domain.Devices.Interfaces[0].InterfaceBindingMethod = kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}
		}), env: enabled, why: "only a restart"},
		"namespace not in the mesh": {vmi: running(pinned), env: vmwebhook.Env{Namespace: vmwebhook.Namespace{Name: "vms"}},
			why: "would not be in the mesh"},
	} {
		before := tc.vmi.DeepCopy()
		err := Prepare(tc.vmi, tc.env, mesh.DefaultConfig(), vmwebhook.DefaultConfig(), 1, mesh.OnboardedByCLI, now)
		if err == nil || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%s: got %v, want %q", name, err, tc.why)
		}
		if tc.vmi.Labels[mesh.InjectKey] != before.Labels[mesh.InjectKey] || len(tc.vmi.Annotations) != len(before.Annotations) {
			t.Errorf("%s: a refused VMI was changed", name)
		}
	}
}

func TestRepinUndoesInjectionAndPinsAgain(t *testing.T) {
	vmi := running(pinned)
	if err := Prepare(vmi, enabled, mesh.DefaultConfig(), vmwebhook.DefaultConfig(), 1, mesh.OnboardedByController, now); err != nil {
		t.Fatal(err)
	}
	Repin(vmi, now)
	if mesh.KubeVirtIstioOn(vmi) || vmi.Labels[mesh.InjectKey] != "false" || !PinnedByVirtmesh(vmi) || vmi.Annotations[mesh.OnboardingAnnotation] != "" ||
		!mesh.PinAbandoned(vmi.Annotations) {
		t.Fatalf("repin: %v %v", vmi.Labels, vmi.Annotations)
	}
	if d := mesh.Decide("vms", enabled.Namespace.Labels, vmi.Labels, vmi.Annotations, mesh.DefaultConfig()); d.InMesh {
		t.Fatal("a re-pinned VMI's next migration would still get a proxy")
	}
}

func TestMigrationNames(t *testing.T) {
	a := running()
	if MigrationName(a, 1, now) != MigrationName(running(), 1, now) || MigrationName(a, 1, now) == MigrationName(a, 2, now) ||
		MigrationName(a, 1, now) == MigrationName(a, 1, now.Add(time.Second)) {
		t.Fatal("not one name per VMI, attempt and start")
	}
	b := running(func(v *kubevirtv1.VirtualMachineInstance) { v.UID = "other" })
	if Ours(b, MigrationName(a, 1, now)) || !Ours(a, MigrationName(a, 3, now)) || Ours(a, "virtmesh-onboard-db") {
		t.Fatal("a new VMI of the same name would follow an old VMI's migration, or a foreign name reads as ours")
	}
	long := running(func(v *kubevirtv1.VirtualMachineInstance) {
		v.Name = strings.Repeat("a", 23) + "-" + strings.Repeat("b", 200)
	})
	if n := MigrationName(long, 3, now); len(n) > 63 || strings.Contains(n, "--") {
		t.Fatalf("name %q (%d chars)", n, len(n))
	}
	m := Migration(a, MigrationName(a, 2, now))
	if m.Spec.VMIName != a.Name || m.Namespace != "vms" || m.Labels[MigrationLabel] != string(a.UID) || m.OwnerReferences[0].UID != a.UID {
		t.Fatalf("migration %+v", m)
	}
}

func TestBackoffGrowsAndIsBounded(t *testing.T) {
	if Backoff(time.Minute, 1) != time.Minute || Backoff(time.Minute, 2) != 2*time.Minute || Backoff(time.Minute, 100) != 64*time.Minute {
		t.Fatal(Backoff(time.Minute, 1), Backoff(time.Minute, 2), Backoff(time.Minute, 100))
	}
}

func TestTargetPodPendingFindsAMigrationNotOnTheVMIYet(t *testing.T) {
	vmi := running()
	vmi.Status.NodeName = "node1"
	source := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "virt-launcher-db-aaaaa", UID: "p1",
		CreationTimestamp: metav1.NewTime(time.Unix(100, 0))}, Spec: corev1.PodSpec{NodeName: "node1"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	vmi.Status.ActivePods = map[types.UID]string{"p1": "node1"}
	if got := TargetPodPending(vmi, []*corev1.Pod{source}); got != "" {
		t.Errorf("only the active pod: got %q, want none", got)
	}
	target := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "virt-launcher-db-bbbbb", UID: "p2",
		CreationTimestamp: metav1.NewTime(time.Unix(200, 0))}, Status: corev1.PodStatus{Phase: corev1.PodPending}}
	if got := TargetPodPending(vmi, []*corev1.Pod{source, target}); got != target.Name {
		t.Errorf("a pending target: got %q, want %q", got, target.Name)
	}
	target.Status.Phase = corev1.PodFailed
	if got := TargetPodPending(vmi, []*corev1.Pod{source, target}); got != "" {
		t.Errorf("a failed target: got %q, want none", got)
	}
}

func TestStartedRecentlyDoesNotBelieveTheFuture(t *testing.T) {
	at := time.Unix(1_000_000, 0)
	for name, tc := range map[string]struct {
		started time.Time
		want    bool
	}{
		"just now":             {at.Add(-5 * time.Second), true},
		"clock skew":           {at.Add(20 * time.Second), true},
		"two minutes ago":      {at.Add(-2 * time.Minute), false},
		"forged, a year ahead": {at.Add(365 * 24 * time.Hour), false},
	} {
		o := mesh.OnboardingStatus{Attempt: 1, Migration: "m", Started: metav1.NewTime(tc.started)}
		if got := StartedRecently(o, at); got != tc.want {
			t.Errorf("%s: got %v, want %v", name, got, tc.want)
		}
	}
}

// Before every migration of an onboarding, virtmesh checks the VMI still
// joins by it: an annotation anyone may write, or a namespace that left the
// mesh meanwhile, must not have virtmesh migrate a VMI into a hazard.
func TestJoins(t *testing.T) {
	prepared := func(v *kubevirtv1.VirtualMachineInstance) {
		Pin(v, now)
		if err := Prepare(v, enabled, mesh.DefaultConfig(), vmwebhook.DefaultConfig(), 1, mesh.OnboardedByController, now); err != nil {
			t.Fatal(err)
		}
	}
	labelled := enabled.Namespace.Labels
	for name, tc := range map[string]struct {
		vmi      *kubevirtv1.VirtualMachineInstance
		nsLabels map[string]string
		cfg      mesh.Config
		why      string // "" : joins
	}{
		"prepared, namespace in the mesh": {vmi: running(prepared), nsLabels: labelled},
		"a forged annotation on a VMI without the mesh metadata": {vmi: running(func(v *kubevirtv1.VirtualMachineInstance) {
			v.Annotations = map[string]string{mesh.OnboardingAnnotation: Attempt(v, 1, mesh.OnboardedByCLI, now).Encode()}
		}), nsLabels: labelled, why: "lacks the annotation"},
		"pinned again, annotation kept": {vmi: running(prepared, func(v *kubevirtv1.VirtualMachineInstance) { v.Labels[mesh.InjectKey] = "false" }),
			nsLabels: labelled, why: "would not give its new pod a sidecar"},
		"the namespace left the mesh": {vmi: running(prepared), nsLabels: map[string]string{}, why: "no longer in the mesh"},
		"the namespace opted out": {vmi: running(prepared), nsLabels: map[string]string{mesh.NamespaceInjectionLabel: "disabled"},
			why: "would not give its new pod a sidecar"},
		"the namespace is excluded now": {vmi: running(prepared), nsLabels: labelled, cfg: mesh.Config{ExcludedNamespaces: []string{"vms"}},
			why: "excluded from the mesh"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg.ExcludedNamespaces == nil {
				cfg = mesh.DefaultConfig()
			}
			ok, why := Joins(tc.vmi, tc.nsLabels, cfg)
			if ok != (tc.why == "") || !strings.Contains(why, tc.why) {
				t.Errorf("Joins = %v, %q; want it to say %q", ok, why, tc.why)
			}
		})
	}
}
