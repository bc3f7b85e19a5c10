package status

import (
	"context"
	"fmt"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/injector"
	"github.com/virtmesh/virtmesh/internal/mesh"
)

// Check is what kubectl virtmesh check-namespace says about a namespace:
// whether VMs created there now would be meshed, by which injector, with
// which NAD, and how its VMs stand.
type Check struct {
	Namespace string `json:"namespace"`
	// Meshed: VMs created here now are put in the mesh (unless they opt out).
	Meshed bool   `json:"meshed"`
	Why    string `json:"why"`
	// Webhook says whether virtmesh's webhook is installed ("?": cannot tell).
	Webhook string `json:"webhook"`
	// Injector is the Istio injector that would inject the VMs' pods.
	Injector string `json:"injector"`
	// NAD is the NetworkAttachmentDefinition their pods would reference,
	// and whether it exists.
	NAD string `json:"nad"`
	// VMs counts the namespace's VMs and standalone VMIs per state.
	VMs map[mesh.State]int `json:"vms"`
	// Problems are what would keep a VM created here now out of the mesh
	// or from starting, or VMs that need action.
	Problems []string `json:"problems,omitempty"`
}

// WebhookConfigurationName is the name manifests/webhook gives virtmesh's
// MutatingWebhookConfiguration.
const WebhookConfigurationName = "virtmesh"

// CheckNamespace reads what it can with the user's rights; what it may not
// read is shown as "?" with the reason, not as an error. Only the namespace
// itself and its VMs must be readable.
func CheckNamespace(ctx context.Context, c client.Reader, ns string, cfg mesh.Config) (*Check, error) {
	nsObj := &metav1.PartialObjectMetadata{}
	nsObj.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := c.Get(ctx, client.ObjectKey{Name: ns}, nsObj); apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("namespace %q not found", ns)
	} else if err := read("get namespace "+ns, err); err != nil {
		return nil, err
	}
	d := mesh.NamespaceInMesh(ns, nsObj.Labels, cfg)
	out := &Check{Namespace: ns, Meshed: d.InMesh, Why: d.Reason(), VMs: map[mesh.State]int{}}
	if d.InMesh && nsObj.Labels[mesh.EnforceLabel] == "true" {
		out.Why += "; " + mesh.EnforceLabel + "=true: VMs cannot opt out"
	}
	_, injectionLabel := nsObj.Labels[mesh.NamespaceInjectionLabel]
	_, revLabel := nsObj.Labels[mesh.RevisionLabel]
	switch {
	case slices.Contains(cfg.ExcludedNamespaces, ns):
		if injectionLabel || revLabel {
			out.Problems = append(out.Problems, "namespace "+ns+" is excluded from virtmesh but labelled for Istio injection: "+
				"Istio gives its VMs' pods a proxy that KubeVirt does not serve (they never become Ready); remove the label")
		}
	case !d.InMesh && !injectionLabel && !revLabel:
		out.Why += " (a VM still joins if its template is labelled " + mesh.InjectKey + "=true)"
	}

	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	switch err := c.Get(ctx, client.ObjectKey{Name: WebhookConfigurationName}, mwc); {
	case err == nil:
		out.Webhook = "installed (MutatingWebhookConfiguration " + WebhookConfigurationName + ")"
	case apierrors.IsNotFound(err):
		out.Webhook = "not installed"
		out.Problems = append(out.Problems, "virtmesh's webhook is not installed: new VMs get no inject annotation, masquerade binding or app label")
	default:
		out.Webhook = "? (" + reason(err) + ")"
	}

	out.Injector, out.NAD = "-", "-"
	if d.InMesh {
		checkInjector(ctx, c, out, nsObj.Labels)
	}

	rows, err := Collect(ctx, c, Query{Namespace: ns, Config: cfg})
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		out.VMs[r.State]++
		if r.State.Trouble() {
			out.Problems = append(out.Problems, fmt.Sprintf("%s %s is %s: %s", r.Kind, r.Name, r.State, r.NextStep))
		}
	}
	return out, nil
}

// checkInjector finds the Istio injector of the namespace's VMs and the NAD
// it makes their pods reference.
func checkInjector(ctx context.Context, c client.Reader, out *Check, nsLabels map[string]string) {
	mwcs := &admissionregistrationv1.MutatingWebhookConfigurationList{}
	if err := c.List(ctx, mwcs, client.MatchingLabels{injector.WebhookLabel: injector.WebhookLabelValue}); err != nil {
		out.Injector, out.NAD = "? ("+reason(err)+")", "?"
		return
	}
	mwc := injector.Select(mwcs.Items, nsLabels, map[string]string{mesh.InjectKey: "true"})
	if mwc == nil {
		out.Injector = "none"
		if len(mwcs.Items) == 0 {
			out.Problems = append(out.Problems, "no Istio injector is installed (MutatingWebhookConfiguration labelled app=sidecar-injector): VMs get no proxy")
		} else {
			out.Problems = append(out.Problems, "no installed Istio injector injects this namespace (a revision that is not installed?): VMs get no proxy")
		}
		return
	}
	out.Injector = mwc.Name
	key, ok := injector.ConfigMapKey(mwc)
	if !ok {
		out.NAD = "? (the injector's configuration is not in this cluster)"
		return
	}
	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, key, cm); err != nil {
		out.NAD = "? (ConfigMap " + key.String() + ": " + reason(err) + ")"
		return
	}
	dec := injector.Decide(cm.Data["values"], cm.Data["config"])
	if dec.Version != "" {
		out.Injector += " (Istio " + dec.Version + ")"
	}
	ref := dec.Ref(out.Namespace)
	switch dec.Kind {
	case injector.None:
		out.NAD = "none needed"
		return
	case injector.Unknown:
		out.NAD = "? (" + dec.Why + ")"
		return
	}
	g := &gatherer{c: c, nads: map[string]string{}}
	switch g.nad(ctx, ref) {
	case "":
		out.NAD = ref
	case "missing":
		out.NAD = ref + " (missing)"
		out.Problems = append(out.Problems, "NetworkAttachmentDefinition "+ref+" does not exist: meshed VMs' pods cannot start; "+
			strings.TrimSuffix(nadFix(dec), "."))
	default:
		out.NAD = ref + " (?)"
	}
}

func nadFix(dec injector.Decision) string {
	switch dec.Kind {
	case injector.Shared:
		return "install istio-cni with provider: multus (OpenShift Service Mesh 3: an IstioCNI resource), which creates it"
	case injector.Maistra:
		return "add the namespace to the ServiceMeshMemberRoll: OpenShift Service Mesh 2 creates it in members"
	}
	return "virtmesh creates it (is --cni-nad=off set?)"
}

func reason(err error) string {
	switch {
	case apierrors.IsForbidden(err):
		return "you may not read it"
	case apierrors.IsNotFound(err):
		return "not found"
	}
	return err.Error()
}

// States in table order, for printing counts.
func counts(m map[mesh.State]int) string {
	var parts []string
	for _, s := range mesh.States {
		if m[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", m[s], s))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(slices.Clip(parts), ", ")
}
