package injector

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// Istio labels every injector's MutatingWebhookConfiguration with these.
const (
	WebhookLabel      = "app"
	WebhookLabelValue = "sidecar-injector"
	RevisionLabel     = "istio.io/rev"
	defaultRevision   = "default"
	configMapPrefix   = "istio-sidecar-injector"
)

// ConfigMapKey is where an injector's ConfigMap lives: istio-sidecar-injector
// (revision "default") or istio-sidecar-injector-<revision> (Maistra: the
// control plane's name), in the namespace of the webhook's Service.
func ConfigMapKey(mwc *admissionregistrationv1.MutatingWebhookConfiguration) (types.NamespacedName, bool) {
	var ns string
	for _, w := range mwc.Webhooks {
		if s := w.ClientConfig.Service; s != nil {
			ns = s.Namespace
			break
		}
	}
	if ns == "" {
		return types.NamespacedName{}, false // a URL webhook (external istiod): no ConfigMap here
	}
	name := configMapPrefix
	if rev := mwc.Labels[RevisionLabel]; rev != "" && rev != defaultRevision {
		name += "-" + rev
	}
	return types.NamespacedName{Namespace: ns, Name: name}, true
}

// Injects reports whether the API server would call this injector for a
// pod with podLabels in a namespace with nsLabels: some entry's namespace and
// object selectors both match.
func Injects(mwc *admissionregistrationv1.MutatingWebhookConfiguration, nsLabels, podLabels map[string]string) bool {
	for _, w := range mwc.Webhooks {
		if matches(w.NamespaceSelector, nsLabels) && matches(w.ObjectSelector, podLabels) {
			return true
		}
	}
	return false
}

// Select is the injector that the API server would call first for such a pod
// (configurations in name order, as it calls them), or nil.
func Select(mwcs []admissionregistrationv1.MutatingWebhookConfiguration, nsLabels, podLabels map[string]string) *admissionregistrationv1.MutatingWebhookConfiguration {
	var first *admissionregistrationv1.MutatingWebhookConfiguration
	for i := range mwcs {
		if Injects(&mwcs[i], nsLabels, podLabels) && (first == nil || mwcs[i].Name < first.Name) {
			first = &mwcs[i]
		}
	}
	return first
}

func matches(sel *metav1.LabelSelector, l map[string]string) bool {
	if sel == nil {
		return true
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false // the API server rejects such a configuration
	}
	return s.Matches(labels.Set(l))
}

// Missing says why no injector among mwcs would give a pod with podLabels in
// a namespace with nsLabels a proxy ("" when one would). Migrating a VM with
// the mesh metadata then would turn KubeVirt's Istio networking on in a pod
// without a proxy: the VM unreachable.
func Missing(mwcs []admissionregistrationv1.MutatingWebhookConfiguration, nsLabels, podLabels map[string]string) string {
	if Select(mwcs, nsLabels, podLabels) != nil {
		return ""
	}
	return "no Istio injector would give its new pod a proxy (no MutatingWebhookConfiguration labelled " + WebhookLabel + "=" +
		WebhookLabelValue + " selects it: Istio is not installed, or not the revision the namespace names)"
}
