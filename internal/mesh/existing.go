package mesh

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ExistingVMIs is what virtmesh does with a VMI that was running before its
// namespace joined the mesh (state NeedsRestart).
type ExistingVMIs string

// The policies for existing VMIs: the --existing-vmis flag, overridden per
// namespace by the ExistingVMIsLabel.
const (
	// ExistingPin labels such a VMI sidecar.istio.io/inject=false so its
	// live migrations keep it consistently outside the mesh (the default).
	ExistingPin ExistingVMIs = "pin"
	// ExistingOnboard pins it, then brings it in by a live migration when
	// it can (masquerade binding, live-migratable), a few at a time.
	ExistingOnboard ExistingVMIs = "onboard"
	// ExistingIgnore does neither: the state says NeedsRestart.
	ExistingIgnore ExistingVMIs = "ignore"
)

// ExistingVMIsLabel on a namespace overrides --existing-vmis there.
const ExistingVMIsLabel = "virtmesh.io/existing-vmis"

// ParseExistingVMIs reads a policy name.
func ParseExistingVMIs(s string) (ExistingVMIs, error) {
	switch p := ExistingVMIs(s); p {
	case ExistingPin, ExistingOnboard, ExistingIgnore:
		return p, nil
	}
	return "", fmt.Errorf("%q is not pin, onboard or ignore", s)
}

// ExistingPolicy is the policy for a namespace: its ExistingVMIsLabel when
// valid, else def. bad is the label's value when it is not a policy.
func ExistingPolicy(nsLabels map[string]string, def ExistingVMIs) (p ExistingVMIs, bad string) {
	v, ok := nsLabels[ExistingVMIsLabel]
	if !ok {
		return def, ""
	}
	if p, err := ParseExistingVMIs(v); err == nil {
		return p, ""
	}
	return def, v
}

// PinAbandonedPrefix starts the PinnedAnnotation of a VMI whose onboarding
// failed: virtmesh does not onboard it again by itself.
const PinAbandonedPrefix = "onboarding abandoned; pinned again at "

// PinAbandoned reports whether a VMI's pin follows a failed onboarding.
func PinAbandoned(annotations map[string]string) bool {
	return strings.HasPrefix(annotations[PinnedAnnotation], PinAbandonedPrefix)
}

// Who started an onboarding.
const (
	OnboardedByController = "virtmesh"
	OnboardedByCLI        = "kubectl-virtmesh"
)

// MaxOnboardingAttempts is how many migrations an onboarding tries before
// virtmesh pins the VMI again and says so.
const MaxOnboardingAttempts = 3

// OnboardingStatus is the value of the OnboardingAnnotation (JSON): which attempt
// runs, its migration, and when the next one may start after a failure.
type OnboardingStatus struct {
	Attempt   int         `json:"attempt"`
	Migration string      `json:"migration"`
	By        string      `json:"by,omitempty"`
	Started   metav1.Time `json:"started"`
	// RetryAfter is set once this attempt's migration failed: the next
	// attempt starts then (under the onboard policy), or the VMI is pinned
	// again.
	RetryAfter  *metav1.Time `json:"retryAfter,omitempty"`
	LastFailure string       `json:"lastFailure,omitempty"`
	// MeshedAt is when the VMI got the mesh metadata: the first attempt's
	// update (unset on the first attempt: Started).
	MeshedAt *metav1.Time `json:"meshedAt,omitempty"`
}

// MeshedSince is when the VMI got the mesh metadata.
func (o OnboardingStatus) MeshedSince() time.Time {
	if o.MeshedAt != nil {
		return o.MeshedAt.Time
	}
	return o.Started.Time
}

// ParseOnboarding reads the OnboardingAnnotation.
func ParseOnboarding(v string) (OnboardingStatus, error) {
	var o OnboardingStatus
	if err := json.Unmarshal([]byte(v), &o); err != nil {
		return OnboardingStatus{}, fmt.Errorf("annotation %s is not virtmesh's: %w", OnboardingAnnotation, err)
	}
	if o.Attempt < 1 || o.Migration == "" {
		return OnboardingStatus{}, fmt.Errorf("annotation %s is not virtmesh's: no attempt or migration", OnboardingAnnotation)
	}
	return o, nil
}

// Encode is the annotation value.
func (o OnboardingStatus) Encode() string {
	raw, _ := json.Marshal(o) // plain fields: cannot fail
	return string(raw)
}

// Describe says where the onboarding stands, in plain words.
func (o OnboardingStatus) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "live migration %s (attempt %d of %d", o.Migration, o.Attempt, MaxOnboardingAttempts)
	if o.By == OnboardedByCLI {
		b.WriteString(", started with kubectl virtmesh onboard")
	}
	b.WriteString(")")
	if o.RetryAfter != nil {
		fmt.Fprintf(&b, " failed")
		if o.LastFailure != "" {
			fmt.Fprintf(&b, ": %s", o.LastFailure)
		}
		fmt.Fprintf(&b, "; the VMI carries the mesh metadata but its pod has no proxy (harmless while the VM stays in a pod whose networking KubeVirt set up before that); next attempt after %s",
			o.RetryAfter.UTC().Format(time.RFC3339))
	}
	return b.String()
}
