package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// Path is where the API server sends VMI admission reviews; other tools rely on it.
const Path = "/mutate-kubevirt-io-v1-virtualmachineinstance"

// NamespaceLabels returns the labels of a namespace.
type NamespaceLabels func(ctx context.Context, name string) (map[string]string, error)

// Handler adapts MutateVMI to admission requests.
type Handler struct {
	Mesh            mesh.Config
	Config          Config
	NamespaceLabels NamespaceLabels
}

var _ admission.Handler = &Handler{}

// Handle mutates VMIs on CREATE; everything else passes untouched.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Resource.Group != kubevirtv1.SchemeGroupVersion.Group || req.Resource.Resource != "virtualmachineinstances" {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf(
			"virtmesh mutates kubevirt.io virtualmachineinstances only, got resource %q in group %q (is the body an AdmissionReview?)",
			req.Resource.Resource, req.Resource.Group))
	}
	if req.Operation != admissionv1.Create {
		return admission.Allowed("")
	}
	if len(req.Object.Raw) == 0 {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("admission request %s has no object", req.UID))
	}
	vmi := &kubevirtv1.VirtualMachineInstance{}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(req.Object.Raw, vmi); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding VirtualMachineInstance: %w", err))
	}
	if vmi.Namespace == "" {
		vmi.Namespace = req.Namespace
	}
	nsLabels, err := h.NamespaceLabels(ctx, vmi.Namespace)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading namespace %q: %w", vmi.Namespace, err))
	}
	original := vmi.DeepCopy()
	res := MutateVMI(vmi, Namespace{Name: vmi.Namespace, Labels: nsLabels}, h.Mesh, h.Config)
	if res.Denied {
		return admission.Denied(res.Reason).WithWarnings(res.Warnings...)
	}
	if len(res.Changes) == 0 {
		// Out of the mesh, not meshable, or already mutated: nothing to patch.
		return admission.Allowed("").WithWarnings(res.Warnings...)
	}
	resp, err := patchResponse(original, vmi)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return resp.WithWarnings(res.Warnings...)
}

// patchResponse diffs the VMI as decoded against the VMI as mutated. Both go
// through the same Go types, so a field those types do not know appears in
// neither and the patch never touches it in the object the API server holds.
func patchResponse(original, mutated *kubevirtv1.VirtualMachineInstance) (admission.Response, error) {
	before, err := json.Marshal(original)
	if err != nil {
		return admission.Response{}, fmt.Errorf("encoding VirtualMachineInstance: %w", err)
	}
	after, err := json.Marshal(mutated)
	if err != nil {
		return admission.Response{}, fmt.Errorf("encoding mutated VirtualMachineInstance: %w", err)
	}
	ops, err := jsonpatch.CreatePatch(before, after)
	if err != nil {
		return admission.Response{}, fmt.Errorf("computing patch: %w", err)
	}
	return admission.Patched("", ops...), nil
}
