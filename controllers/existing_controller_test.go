package controllers

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/onboard"
)

// An onboarding holds a slot while its migration starts or runs; not while
// the VM is paused, nor for long on an annotation alone (anyone who may
// update the VMI can write one).
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
		"started long ago, no migration running":  {vmi(now.Add(-time.Hour)), false},
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
