package webhook

import (
	"path/filepath"
	"slices"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/virtmesh/virtmesh/internal/manifests"
	"github.com/virtmesh/virtmesh/internal/mesh"
)

// TestWebhookSelectorsAgreeWithDecide proves, over every combination of the
// labels that matter, that the shipped MutatingWebhookConfiguration calls
// virtmesh for exactly the VMIs mesh.Decide meshes or denies (plus, in
// enforced namespaces, VMIs it lets through untouched), and never for others.
func TestWebhookSelectorsAgreeWithDecide(t *testing.T) {
	objs, err := manifests.Render(filepath.Join("..", "manifests", "webhook"))
	if err != nil {
		t.Fatal(err)
	}
	mwcs, err := manifests.MutatingWebhookConfigurations(objs)
	if err != nil || len(mwcs) != 1 {
		t.Fatalf("want one MutatingWebhookConfiguration, got %d (%v)", len(mwcs), err)
	}
	checkEntries(t, mwcs[0])
	cfg := mesh.DefaultConfig()
	nsOptions := map[string][]string{
		mesh.NamespaceInjectionLabel: {"", "enabled", "disabled"},
		mesh.RevisionLabel:           {"", "canary", emptyValue},
		mesh.DataplaneModeLabel:      {"", mesh.DataplaneModeAmbient},
		mesh.EnforceLabel:            {"", "true"},
	}
	objOptions := map[string][]string{
		mesh.InjectKey:          {"", "true", "false", "yes", "True", "no", "off", emptyValue},
		mesh.RevisionLabel:      {"", "canary", emptyValue},
		mesh.DataplaneModeLabel: {"", mesh.DataplaneModeNone},
	}
	checked := 0
	for _, nsName := range []string{"vms", "kube-system", "virtmesh-system"} {
		for _, nsLabels := range combinations(nsOptions) {
			nsLabels[mesh.NamespaceNameLabel] = nsName
			for _, objLabels := range combinations(objOptions) {
				called := webhookCalled(t, mwcs[0], nsLabels, objLabels)
				d := mesh.Decide(nsName, nsLabels, objLabels, nil, cfg)
				enforced := nsLabels[mesh.EnforceLabel] == "true" && !slices.Contains(cfg.ExcludedNamespaces, nsName)
				if (d.InMesh || d.Denied) && !called {
					t.Errorf("ns %v, vmi %v: Decide meshes it (%s) but the webhook is not called", nsLabels, objLabels, d.Reason())
				}
				if called && !d.InMesh && !d.Denied && !enforced && !unselectableOptOut(objLabels) {
					t.Errorf("ns %v, vmi %v: webhook called but Decide leaves it out (%s)", nsLabels, objLabels, d.Reason())
				}
				checked++
			}
		}
	}
	t.Logf("checked %d namespace/VMI label combinations", checked)
}

// unselectableOptOut: the VMI opts out with a value other than "false" (Istio
// reads any value but y/yes/true/on as "do not inject"), which a label
// selector cannot list; the webhook is called and lets it through unchanged.
func unselectableOptOut(objLabels map[string]string) bool {
	v, ok := objLabels[mesh.InjectKey]
	return ok && v != "" && v != "false" && !mesh.Truthy(v)
}

// checkEntries holds every entry to the settings the README promises.
func checkEntries(t *testing.T, mwc *admissionregistrationv1.MutatingWebhookConfiguration) {
	t.Helper()
	for _, w := range mwc.Webhooks {
		if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Fail ||
			w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNone ||
			w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy ||
			w.TimeoutSeconds == nil || *w.TimeoutSeconds > 5 ||
			w.MatchPolicy == nil || *w.MatchPolicy != admissionregistrationv1.Equivalent ||
			!slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) ||
			w.ClientConfig.Service == nil || w.ClientConfig.Service.Path == nil || *w.ClientConfig.Service.Path != Path {
			t.Errorf("entry %s does not have the promised settings: %+v", w.Name, w)
		}
		if len(w.Rules) != 1 || !slices.Equal(w.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) {
			t.Errorf("entry %s must match CREATE only: %+v", w.Name, w.Rules)
		}
	}
}

func webhookCalled(t *testing.T, mwc *admissionregistrationv1.MutatingWebhookConfiguration, nsLabels, objLabels map[string]string) bool {
	t.Helper()
	for _, w := range mwc.Webhooks {
		if matches(t, w.NamespaceSelector, nsLabels) && matches(t, w.ObjectSelector, objLabels) {
			return true
		}
	}
	return false
}

func matches(t *testing.T, sel *metav1.LabelSelector, l map[string]string) bool {
	t.Helper()
	if sel == nil {
		return true
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return s.Matches(labels.Set(l))
}

// emptyValue stands for a label set to the empty string in combinations.
const emptyValue = "<empty>"

// combinations returns every label map choosing one value per key ("" =
// unset, emptyValue = set to "").
func combinations(options map[string][]string) []map[string]string {
	out := []map[string]string{{}}
	keys := make([]string, 0, len(options))
	for k := range options {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		var next []map[string]string
		for _, base := range out {
			for _, v := range options[k] {
				m := make(map[string]string, len(base)+1)
				for bk, bv := range base {
					m[bk] = bv
				}
				switch v {
				case "":
				case emptyValue:
					m[k] = ""
				default:
					m[k] = v
				}
				next = append(next, m)
			}
		}
		out = next
	}
	return out
}
