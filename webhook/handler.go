package webhook

import (
	"context"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	"github.com/virtmesh/virtmesh/internal/injector"
	"github.com/virtmesh/virtmesh/internal/mesh"
)

// Path is where the API server sends VMI admission reviews; other tools rely on it.
const Path = "/mutate-kubevirt-io-v1-virtualmachineinstance"

// NamespaceLabels returns the labels of a namespace.
type NamespaceLabels func(ctx context.Context, name string) (map[string]string, error)

// VirtualMachines reads a VirtualMachine; a nil VirtualMachines reads none.
type VirtualMachines func(ctx context.Context, namespace, name string) (*kubevirtv1.VirtualMachine, error)

// Injectors finds the Istio injector that injects a pod with these labels in
// a namespace with those, and reads its configuration (ok false: none found
// or readable).
type Injectors func(ctx context.Context, nsLabels, podLabels map[string]string) (d injector.Decision, ok bool)

// Handler adapts MutateVMI to admission requests.
type Handler struct {
	Mesh            mesh.Config
	Config          Config
	NamespaceLabels NamespaceLabels
	VirtualMachines VirtualMachines
	Injectors       Injectors // nil: never read
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
	env := Env{Namespace: Namespace{Name: vmi.Namespace, Labels: nsLabels}}
	if h.needsVM(vmi, env.Namespace) {
		// Needed: without it a pool's VMI would get the wrong app for good,
		// or a defaulted bridge be refused. An error is returned, and
		// virt-controller creates the VMI again shortly.
		if env.VM, err = h.ownerVM(ctx, vmi); err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
	}
	was := snapshot(vmi)
	res := MutateVMI(vmi, env, h.Mesh, h.Config)
	if !res.Denied && mesh.KubeVirtIstioOn(vmi) {
		// Meshed, by virtmesh or by its owner's own labels.
		res.Warnings = append(res.Warnings, h.networksBug(ctx, vmi, nsLabels)...)
	}
	if res.Denied {
		return admission.Denied(res.Reason).WithWarnings(res.Warnings...)
	}
	if len(res.Changes) == 0 {
		// Out of the mesh, not meshable, or already mutated: nothing to patch.
		return admission.Allowed("").WithWarnings(res.Warnings...)
	}
	ops, err := was.patch(vmi)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.Patched("", ops...).WithWarnings(res.Warnings...)
}

// networksBug warns the owner of a meshed VMI whose networks annotation
// KubeVirt writes in JSON form (secondary networks, the passt binding plugin)
// when the Istio release that injects it cannot start such a pod
// (kubevirt/kubevirt#13927). Only such VMIs, rare, cost the reads.
func (h *Handler) networksBug(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, nsLabels map[string]string) []string {
	if h.Injectors == nil || !mesh.JSONNetworks(&vmi.Spec) {
		return nil
	}
	d, ok := h.Injectors(ctx, nsLabels, vmi.Labels)
	switch {
	case !ok:
		return nil
	case d.OverwritesNetworks && !d.NetworksBug:
		return []string{"virtmesh: this VM's secondary networks (or passt binding plugin) will be dropped: the Istio injector's " +
			"config.injectedAnnotations replaces its pod's k8s.v1.cni.cncf.io/networks annotation; ask the mesh admin to remove it there"}
	case !d.NetworksBug:
		return nil
	}
	return []string{fmt.Sprintf("virtmesh: this VM's pod will not start: it has secondary networks or the passt binding plugin, "+
		"so KubeVirt writes its networks annotation in JSON form, and Istio %s's injector appends to that form wrongly "+
		"(kubevirt/kubevirt#13927, fixed by istio/istio#55000); upgrade Istio to 1.23.6, 1.24.4, 1.25.1 or newer", d.Version)}
}

// needsVM: the VMI's VirtualMachine can change the outcome only for a meshed
// VMI that gets its app label from virtmesh (a pool's name) or meets
// --bridge-policy=deny with a bridge binding; every other admission skips
// the read.
func (h *Handler) needsVM(vmi *kubevirtv1.VirtualMachineInstance, ns Namespace) bool {
	if !mesh.Decide(ns.Name, ns.Labels, vmi.Labels, vmi.Annotations, h.Mesh).InMesh {
		return false
	}
	_, hasApp := vmi.Labels[mesh.AppLabel]
	if !hasApp && vmi.Labels[mesh.AppNameLabel] == "" {
		return true
	}
	iface := mesh.PodInterface(&vmi.Spec)
	return h.Config.BridgePolicy == BridgeDeny && iface != nil && iface.Bridge != nil
}

// ownerVM reads the VirtualMachine that owns vmi, if any: its owner
// references name a pool, and its template says which binding its owner
// chose. A VM already gone reads as none.
func (h *Handler) ownerVM(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance) (*kubevirtv1.VirtualMachine, error) {
	ref := metav1.GetControllerOfNoCopy(vmi)
	if h.VirtualMachines == nil || ref == nil || ref.Kind != "VirtualMachine" || ref.APIVersion != kubevirtv1.SchemeGroupVersion.String() {
		return nil, nil
	}
	vm, err := h.VirtualMachines(ctx, vmi.Namespace, ref.Name)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading VirtualMachine %s/%s, which owns the VMI: %w", vmi.Namespace, ref.Name, err)
	case vm.UID != ref.UID && ref.UID != "":
		return nil, nil // another VM of the same name
	}
	return vm, nil
}
