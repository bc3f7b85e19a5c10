package controllers

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

// Event reasons of the mesh state, on the VM (or the standalone VMI).
const (
	ReasonStateMeshed       = "Meshed"
	ReasonStateNeedsRestart = "NeedsRestart"
	ReasonStateBroken       = "MeshBroken"
	ReasonStateNotMeshable  = "NotMeshable"
	ReasonStateNoProxy      = "NoIstioProxy"
)

// StateReconciler computes every VMI's mesh state (mesh.StateOf) from the
// VMI, its active launcher pod, its namespace and the NADs; exports the
// count per state and sends an Event when a VM's state turns to one its
// owner must know about. It writes nothing but Events. Requests are VMIs.
type StateReconciler struct {
	Client   client.Client
	Pods     client.Reader // launcher pods (LauncherPods)
	Mesh     mesh.Config
	Recorder record.EventRecorder
	// NADs decides which NAD a VMI without a pod will need (nil:
	// --cni-nad=off); nadsReady says whether the NAD CRD is served.
	NADs      *NADReconciler
	nadsReady atomic.Bool

	ctrl controller.Controller

	mu     sync.Mutex
	states map[types.NamespacedName]mesh.State
}

// NewStateReconciler builds the reconciler on the manager's client.
func NewStateReconciler(mgr ctrl.Manager, events *eventQueue, meshCfg mesh.Config, nads *NADReconciler, pods *LauncherPods) *StateReconciler {
	return &StateReconciler{Client: mgr.GetClient(), Pods: pods, Mesh: meshCfg, Recorder: events.recorder(mgr.GetEventRecorderFor("virtmesh-state")),
		NADs: nads, states: map[types.NamespacedName]mesh.State{}}
}

// SetupWithManager watches VMIs (status included), their launcher pods,
// namespaces (labels) and NADs.
func (r *StateReconciler) SetupWithManager(mgr ctrl.Manager, pods *LauncherPods, workers int) error {
	var err error
	r.ctrl, err = ctrl.NewControllerManagedBy(mgr).
		Named("state").
		For(&kubevirtv1.VirtualMachineInstance{}, builder.WithPredicates(predicate.Funcs{
			UpdateFunc: func(e event.UpdateEvent) bool { return stateChanged(e.ObjectOld, e.ObjectNew) }})).
		WatchesRawSource(pods.Source(handler.EnqueueRequestsFromMapFunc(podToVMI), predicate.Funcs{
			UpdateFunc: func(e event.UpdateEvent) bool { return stateChanged(e.ObjectOld, e.ObjectNew) }})).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.vmisIn), builder.OnlyMetadata,
			builder.WithPredicates(predicate.LabelChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Build(r)
	return err
}

// watchNADs adds the NAD watch once the NAD CRD is served (the NAD
// controller's gate calls it): a NAD that appears or goes concerns the VMIs
// whose pods reference it. Until then no NAD is reported missing.
func (r *StateReconciler) watchNADs(mgr ctrl.Manager) error {
	// Only a NAD's coming and going changes what a state says.
	existence := predicate.Funcs{UpdateFunc: func(event.UpdateEvent) bool { return false }}
	if err := r.ctrl.Watch(source.Kind[client.Object](mgr.GetCache(), &nadv1.NetworkAttachmentDefinition{},
		handler.EnqueueRequestsFromMapFunc(r.vmisIn), existence)); err != nil {
		return err
	}
	r.nadsReady.Store(true)
	return nil
}

// podToVMI maps a launcher pod to its VMI (its controller owner).
func podToVMI(_ context.Context, o client.Object) []reconcile.Request {
	for _, ref := range o.GetOwnerReferences() {
		if ref.Kind == "VirtualMachineInstance" && ref.Controller != nil && *ref.Controller {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: ref.Name}}}
		}
	}
	return nil
}

// vmisIn maps a namespace (or a NAD) to every VMI in its namespace; a NAD
// outside the VMIs' namespaces (a shared one) to every VMI.
func (r *StateReconciler) vmisIn(ctx context.Context, o client.Object) []reconcile.Request {
	var opts []client.ListOption
	switch o.(type) {
	case *nadv1.NetworkAttachmentDefinition:
		// A NAD concerns the VMIs of its namespace; every VMI only when an
		// injector makes pods everywhere reference it (a shared one).
		opts = append(opts, client.InNamespace(o.GetNamespace()))
		if !Virtmeshs(o) && r.NADs != nil && r.NADs.Config.NADMode == NADAuto {
			if shared, err := r.NADs.sharedTargets(ctx); err == nil && shared[client.ObjectKeyFromObject(o)] {
				opts = nil
			}
		}
	default:
		opts = append(opts, client.InNamespace(o.GetName()))
	}
	vmis := &kubevirtv1.VirtualMachineInstanceList{}
	if err := r.Client.List(ctx, vmis, append(opts, client.UnsafeDisableDeepCopy)...); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(vmis.Items))
	for i := range vmis.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&vmis.Items[i])})
	}
	return out
}

// Reconcile computes one VMI's state, records it for the metric, and sends
// an Event when it changed to one worth telling.
func (r *StateReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	vmi := &kubevirtv1.VirtualMachineInstance{}
	if err := r.Client.Get(ctx, req.NamespacedName, vmi); apierrors.IsNotFound(err) {
		r.set(req.NamespacedName, "")
		return reconcile.Result{}, nil
	} else if err != nil {
		return reconcile.Result{}, err
	}
	st, err := r.stateOf(ctx, vmi)
	if err != nil {
		return reconcile.Result{}, err
	}
	prev := r.set(req.NamespacedName, st.State)
	if prev == st.State {
		return reconcile.Result{}, nil // a resync writes nothing
	}
	log.FromContext(ctx).V(1).Info("mesh state", "state", st.State, "was", prev, "reason", st.Reason)
	typ, reason := corev1.EventTypeWarning, ""
	switch st.State {
	case mesh.NeedsRestart:
		reason = ReasonStateNeedsRestart
	case mesh.Broken:
		reason = ReasonStateBroken
	case mesh.NoProxy:
		reason = ReasonStateNoProxy
	case mesh.NotMeshable:
		reason = ReasonStateNotMeshable
	case mesh.Meshed:
		if prev == "" {
			return reconcile.Result{}, nil // first seen (virtmesh started): nothing new
		}
		typ, reason = corev1.EventTypeNormal, ReasonStateMeshed
	default:
		return reconcile.Result{}, nil
	}
	msg := "virtmesh: " + st.Reason
	if st.NextStep != "" {
		msg += ". Next step: " + st.NextStep
	}
	r.Recorder.Event(stateEventRef(vmi), typ, reason, msg)
	return reconcile.Result{}, nil
}

// stateOf reads what the state needs and computes it.
func (r *StateReconciler) stateOf(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance) (mesh.Status, error) {
	ns, err := getNamespace(ctx, r.Client, vmi.Namespace)
	if err != nil {
		return mesh.Status{}, err
	}
	ptrs, err := launcherPodsOf(ctx, r.Pods, vmi)
	if err != nil {
		return mesh.Status{}, err
	}
	in := mesh.StateInput{VMI: vmi, NamespaceLabels: ns.labels, Pod: mesh.ActivePod(vmi, ptrs), Config: r.Mesh}
	in.Others = mesh.OtherPods(in.Pod, ptrs)
	if in.MissingNAD, err = r.missingNAD(ctx, ns, in.VMI, in.Pod); err != nil {
		return mesh.Status{}, err
	}
	return mesh.StateOf(in), nil
}

// launcherPodsOf are vmi's launcher pods, read with reader (LauncherPods,
// or the API server).
func launcherPodsOf(ctx context.Context, reader client.Reader, vmi *kubevirtv1.VirtualMachineInstance) ([]*corev1.Pod, error) {
	pods := &corev1.PodList{}
	// A namespace holds few launcher pods: a label match there costs less
	// than an index with an entry per VMI (memory at 20,000 VMIs).
	if err := reader.List(ctx, pods, client.InNamespace(vmi.Namespace), client.MatchingLabels{CreatedByLabel: string(vmi.UID)}); err != nil {
		return nil, err
	}
	ptrs := make([]*corev1.Pod, len(pods.Items))
	for i := range pods.Items {
		ptrs[i] = &pods.Items[i]
	}
	return ptrs, nil
}

// missingNAD names a NAD the VMI's pod references, or (no pod yet) the
// Istio injector will make it reference, that does not exist.
func (r *StateReconciler) missingNAD(ctx context.Context, ns namespaceInfo, vmi *kubevirtv1.VirtualMachineInstance, pod *corev1.Pod) (string, error) {
	if !r.nadsReady.Load() || vmi.IsFinal() {
		return "", nil
	}
	var refs []string
	switch {
	case pod != nil:
		if pod.Status.Phase != corev1.PodPending {
			return "", nil // it started: its NADs were there
		}
		refs = mesh.PodNetworks(pod)
	case r.NADs != nil:
		plans, err := r.NADs.plans(ctx, ns)
		if err != nil {
			return "", nil // undecided: say nothing rather than something wrong
		}
		if p, ok := plans.of(vmi.Labels); ok && p.Ref(vmi.Namespace) != "" {
			refs = append(refs, p.Ref(vmi.Namespace))
		}
	}
	for _, ref := range refs {
		nsName, name, _ := strings.Cut(ref, "/")
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: nsName, Name: name}, &nadv1.NetworkAttachmentDefinition{})
		switch {
		case apierrors.IsNotFound(err):
			return ref, nil
		case meta.IsNoMatchError(err):
			return "", nil
		case err != nil:
			return "", err
		}
	}
	return "", nil
}

// set records a VMI's state ("" forgets it) and returns the one before.
func (r *StateReconciler) set(key types.NamespacedName, s mesh.State) mesh.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.states[key]
	if s == "" {
		delete(r.states, key)
	} else {
		r.states[key] = s
	}
	return prev
}

// counts returns how many VMIs are in each state.
func (r *StateReconciler) counts() map[mesh.State]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[mesh.State]int, len(mesh.States))
	for _, s := range r.states {
		out[s]++
	}
	return out
}

// stateEventRef is the VM a VMI belongs to, or the standalone VMI itself.
func stateEventRef(vmi *kubevirtv1.VirtualMachineInstance) *corev1.ObjectReference {
	for _, o := range vmi.OwnerReferences {
		if o.Kind == "VirtualMachine" && o.Controller != nil && *o.Controller {
			return eventRef(o, vmi.Namespace)
		}
	}
	return &corev1.ObjectReference{APIVersion: kubevirtv1.SchemeGroupVersion.String(), Kind: "VirtualMachineInstance",
		Name: vmi.Name, Namespace: vmi.Namespace, UID: vmi.UID}
}
