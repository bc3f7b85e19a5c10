package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/onboard"
)

// An onboarding may hold a slot while its migration starts, waits in
// KubeVirt's queue or runs (reserve checks that against the migration); not
// while the VM is paused, nor with a start in the future.
func TestHoldsSlot(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	vmi := func(started time.Time, edits ...func(*kubevirtv1.VirtualMachineInstance)) *kubevirtv1.VirtualMachineInstance {
		v := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "vms", UID: "uid-1"},
			Status: kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Running}}
		v.Annotations = map[string]string{mesh.OnboardingAnnotation: onboard.Attempt(v, 1, mesh.OnboardedByController, started).Encode()}
		for _, e := range edits {
			e(v)
		}
		return v
	}
	paused := func(v *kubevirtv1.VirtualMachineInstance) {
		v.Status.Conditions = []kubevirtv1.VirtualMachineInstanceCondition{{Type: kubevirtv1.VirtualMachineInstancePaused, Status: corev1.ConditionTrue}}
	}
	migrating := func(v *kubevirtv1.VirtualMachineInstance) {
		v.Status.MigrationState = &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: "m-1"}
	}
	for name, tc := range map[string]struct {
		vmi  *kubevirtv1.VirtualMachineInstance
		want bool
	}{
		"just started": {vmi(now.Add(-time.Minute)), true},
		"started long ago, its migration running": {vmi(now.Add(-time.Hour), migrating), true},
		"started long ago, queued by KubeVirt":    {vmi(now.Add(-time.Hour)), true},
		"paused":                                  {vmi(now.Add(-time.Minute), paused), false},
		"paused by KubeVirt mid-migration":        {vmi(now.Add(-time.Minute), paused, migrating), true},
		"a start time in the future":              {vmi(now.Add(24 * time.Hour)), false},
		"not virtmesh's annotation": {vmi(now, func(v *kubevirtv1.VirtualMachineInstance) {
			v.Annotations[mesh.OnboardingAnnotation] = "soon"
		}), false},
	} {
		if got := holdsSlot(tc.vmi, now); got != tc.want {
			t.Errorf("%s: holdsSlot = %v, want %v", name, got, tc.want)
		}
	}
}

// arrival counts an onboarding only on what KubeVirt writes: virtmesh's
// migration ended in success within countWindow, once; it waits while the
// VM is handed over, but not for ever.
func TestArrival(t *testing.T) {
	now := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(d)} }
	base := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "vms", UID: "vmi-1"},
		Status: kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Running, NodeName: "node02"}}
	o := onboard.Attempt(base, 1, mesh.OnboardedByController, now.Add(-5*time.Minute))
	target := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "virt-launcher-db-b", Namespace: "vms", UID: "pod-b",
		Labels: map[string]string{LauncherLabel: LauncherLabelValue, CreatedByLabel: "vmi-1"}}, Spec: corev1.PodSpec{NodeName: "node02"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	migration := func(phase kubevirtv1.VirtualMachineInstanceMigrationPhase, end *metav1.Time) *kubevirtv1.VirtualMachineInstanceMigration {
		m := onboard.Migration(base, o.Migration)
		m.UID = "mig-1"
		m.Status.Phase = phase
		if end != nil {
			m.Status.MigrationState = &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: m.UID, Completed: true, EndTimestamp: end}
		}
		return m
	}
	state := func(uid string, completed bool, start, end *metav1.Time) *kubevirtv1.VirtualMachineInstanceMigrationState {
		return &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: types.UID(uid), TargetPod: target.Name,
			Completed: completed, StartTimestamp: start, EndTimestamp: end}
	}
	for _, tc := range []struct {
		name  string
		ms    *kubevirtv1.VirtualMachineInstanceMigrationState
		mig   *kubevirtv1.VirtualMachineInstanceMigration
		want  int
		again int // after the result was counted
	}{
		{"ours, ended a minute ago", state("mig-1", true, at(-2*time.Minute), at(-time.Minute)),
			migration(kubevirtv1.MigrationSucceeded, at(-time.Minute)), arrivalOurs, arrivalOther},
		{"ours, ended 11 minutes ago", state("mig-1", true, at(-12*time.Minute), at(-11*time.Minute)),
			migration(kubevirtv1.MigrationSucceeded, at(-11*time.Minute)), arrivalOther, arrivalOther},
		{"ours, ended on a clock 3 minutes ahead", state("mig-1", true, at(time.Minute), at(3*time.Minute)),
			migration(kubevirtv1.MigrationSucceeded, at(3*time.Minute)), arrivalOurs, arrivalOther},
		{"a drain moved it; no migration of virtmesh's", state("drain-1", true, at(-2*time.Minute), at(-time.Minute)),
			nil, arrivalOther, arrivalOther},
		{"never migrated", nil, nil, arrivalStarted, arrivalStarted},
		{"handing over", state("mig-1", false, at(-time.Minute), nil),
			migration(kubevirtv1.MigrationRunning, nil), arrivalUnsettled, arrivalUnsettled},
		{"handing over for 11 minutes", state("mig-1", false, at(-11*time.Minute), nil),
			migration(kubevirtv1.MigrationRunning, nil), arrivalStuck, arrivalStuck},
		{"the VMI shows it done, the migration's phase not yet", state("mig-1", true, at(-2*time.Minute), at(-time.Minute)),
			migration(kubevirtv1.MigrationRunning, nil), arrivalUnsettled, arrivalUnsettled},
		{"the migration's phase held back for 11 minutes", state("mig-1", true, at(-12*time.Minute), at(-11*time.Minute)),
			migration(kubevirtv1.MigrationRunning, nil), arrivalStuck, arrivalStuck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vmi := base.DeepCopy()
			vmi.Status.MigrationState = tc.ms
			vmi.Status.ActivePods = map[types.UID]string{target.UID: "node02"}
			objs := []client.Object{target.DeepCopy()}
			if tc.mig != nil {
				objs = append(objs, tc.mig.DeepCopy())
			}
			c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...).Build()
			clock := now
			r := &ExistingReconciler{APIReader: c, Pods: c, Now: func() time.Time { return clock }}
			by, m, err := r.arrival(context.Background(), vmi, o)
			if err != nil || by != tc.want || (by == arrivalOurs) != (m != nil) {
				t.Fatalf("arrival: %d, %v, %v; want %d", by, m, err, tc.want)
			}
			if m != nil {
				r.markCounted(m)
			}
			for _, later := range []time.Duration{0, 9 * time.Minute, 12 * time.Minute} {
				clock = now.Add(later)
				if tc.want == arrivalOurs {
					if by, _, _ := r.arrival(context.Background(), vmi, o); by != tc.again {
						t.Errorf("%s later: %d, want %d", later, by, tc.again)
					}
				}
			}
		})
	}
}

// A re-pin of a Broken VM says how to move it into a pod created pinned: a
// live migration while it can, else a restart its owner can do.
func TestBrokenBeforePin(t *testing.T) {
	vmi := runningVMI(1)
	if got := brokenBeforePin(vmi, "why"); !strings.Contains(got, "Broken: why") || !strings.Contains(got, "virtctl migrate vm-00001 -n vms") {
		t.Errorf("migratable VM: %q", got)
	}
	for i := range vmi.Status.Conditions {
		if vmi.Status.Conditions[i].Type == kubevirtv1.VirtualMachineInstanceIsMigratable {
			vmi.Status.Conditions[i].Status = corev1.ConditionFalse
		}
	}
	if got := brokenBeforePin(vmi, "why"); !strings.Contains(got, "virtctl restart vm-00001") || strings.Contains(got, "virtctl migrate") {
		t.Errorf("VM that cannot migrate any more: %q", got)
	}
	vmi.OwnerReferences = nil
	if got := brokenBeforePin(vmi, "why"); !strings.Contains(got, "delete and re-create the VMI vm-00001 in namespace vms") {
		t.Errorf("standalone VMI that cannot migrate any more: %q", got)
	}
}

// Slots are held by running onboardings in namespaces with the onboard
// policy, one per namespace, checked against their migrations; not by
// those of a namespace being deleted (its VMs are going, and virtmesh does
// nothing there).
func TestReserveCountsNoTerminatingNamespace(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	onboardNS := map[string]string{"istio-injection": "enabled", mesh.ExistingVMIsLabel: string(mesh.ExistingOnboard)}
	var objs []client.Object
	onboarding := func(ns string, migrationRuns bool) *kubevirtv1.VirtualMachineInstance {
		v := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns, UID: types.UID("uid-" + ns)},
			Status: kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Running}}
		o := onboard.Attempt(v, 1, mesh.OnboardedByController, now.Add(-time.Minute))
		v.Annotations = map[string]string{mesh.OnboardingAnnotation: o.Encode()}
		objs = append(objs, v)
		if migrationRuns {
			objs = append(objs, onboard.Migration(v, o.Migration))
		}
		return v
	}
	for _, ns := range []string{"a", "b", "c"} {
		objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: onboardNS}})
	}
	onboarding("a", true)
	onboarding("b", true)
	next := onboarding("c", false) // to be created once it has a slot
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...).
		WithIndex(&kubevirtv1.VirtualMachineInstance{}, onboardingIndex, onboardingRunning).Build()
	r := &ExistingReconciler{Client: c, APIReader: c, Recorder: &refRecorder{}, Policy: mesh.ExistingPin, Concurrency: 2,
		Now: func() time.Time { return now }, started: map[types.NamespacedName]time.Time{}, waiting: map[types.NamespacedName]bool{}}
	if free, err := r.reserve(ctx, next); err != nil || free {
		t.Fatalf("reserve with a and b onboarding = %v, %v; want no free slot (--onboarding-concurrency=2)", free, err)
	}
	b := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: "b"}, b); err != nil {
		t.Fatal(err)
	}
	b.Finalizers = []string{"kubernetes"}
	if err := c.Update(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, b); err != nil { // terminating: the finalizer keeps it
		t.Fatal(err)
	}
	if free, err := r.reserve(ctx, next); err != nil || !free {
		t.Fatalf("reserve with b terminating = %v, %v; want the slot its onboarding held", free, err)
	}
}
