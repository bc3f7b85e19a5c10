package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
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

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;delete

// conflictRecheck is how often an app whose Service name is taken by someone
// else's Service is looked at again.
const conflictRecheck = 2 * time.Minute

// appIndex indexes VMs and standalone VMIs by the app their VMIs carry.
const appIndex = "virtmesh.io/app"

// ServiceReconciler keeps one Service per app for meshed VMs and standalone
// VMIs. Its requests are namespace/app; the Service is named after the app.
type ServiceReconciler struct {
	Client    client.Client // the manager's: reads from the cache
	APIReader client.Reader // reads the API server, for Services virtmesh does not cache
	Config    Config
	Recorder  record.EventRecorder
	warned    warnings
}

// Reconcile makes the Service of one app match the VMs and VMIs it serves.
func (r *ServiceReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	ns, err := getNamespace(ctx, r.Client, req.Namespace)
	if err != nil || !ns.exists || ns.terminating {
		return reconcile.Result{}, err
	}
	app := req.Name
	members, err := r.members(ctx, ns, app)
	if err != nil {
		return reconcile.Result{}, err
	}
	have := &corev1.Service{}
	err = r.Client.Get(ctx, req.NamespacedName, have) // the cache holds only virtmesh's Services
	if client.IgnoreNotFound(err) != nil {
		return reconcile.Result{}, err
	}
	ours := err == nil
	if len(members) == 0 {
		if ours {
			return r.delete(ctx, have, nil, "no meshed VM or VMI of app %q is left to serve")
		}
		return reconcile.Result{}, nil
	}
	if why := ValidServiceName(app); why != "" {
		r.warnAll(members, ReasonInvalidAppName, fmt.Sprintf(
			"app label %q cannot name a Service (%s): virtmesh gives this VM no Service; use an app label that is a DNS-1035 label", app, why))
		return reconcile.Result{}, nil
	}
	r.warnAll(members, ReasonInvalidAppName, "")
	want, problems := DesiredService(ns.name, app, members)
	for _, m := range members {
		var mine []string
		for _, p := range problems {
			if p.Member.UID == m.UID {
				mine = append(mine, p.Message)
			}
		}
		r.warnOnce(m, ReasonPortProtocol, strings.Join(mine, "; "))
	}
	if want == nil {
		r.warnAll(members, ReasonNoPorts, fmt.Sprintf("no VM or VMI of app %q declares a port on its pod-network interface, so virtmesh "+
			"creates no Service for it: list the ports the guest serves under spec.domain.devices.interfaces[].ports "+
			"(name them http-..., grpc-..., tcp-... to choose Istio's protocol)", app))
		if ours {
			return r.delete(ctx, have, members, "no VM or VMI of app %q declares a port any more")
		}
		return reconcile.Result{}, nil
	}
	r.warnAll(members, ReasonNoPorts, "")

	if !ours {
		return r.create(ctx, want, members)
	}
	r.warnAll(members, ReasonServiceConflict, "")
	if serviceUpToDate(have, want) {
		return reconcile.Result{}, nil
	}
	updated := applyService(have, want)
	if err := r.Client.Update(ctx, updated); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return requeueSoon, nil
		}
		return reconcile.Result{}, fmt.Errorf("updating Service %s/%s: %w", ns.name, app, err)
	}
	log.FromContext(ctx).Info("updated Service", "ports", len(want.Spec.Ports), "members", len(members))
	r.eventAll(members, corev1.EventTypeNormal, ReasonServiceUpdated, "virtmesh updated Service %q: %s", app, describe(want))
	return reconcile.Result{}, nil
}

func (r *ServiceReconciler) create(ctx context.Context, want *corev1.Service, members []Member) (reconcile.Result, error) {
	// Not in the cache: either someone else's Service, or none.
	live := &corev1.Service{}
	err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(want), live)
	switch {
	case err == nil && Managed(live):
		return requeueSoon, nil // ours; the cache is behind
	case err == nil:
		r.warnAll(members, ReasonServiceConflict, fmt.Sprintf("Service %q already exists and virtmesh did not create it, so virtmesh "+
			"leaves it as it is; make sure it selects %s=%s and lists the VM's ports, or delete it and virtmesh will create one",
			want.Name, mesh.AppLabel, want.Name))
		// virtmesh does not watch Services it did not create, so look again
		// later: if the owner deletes theirs, virtmesh creates its own. A read,
		// not a write; the warning is not repeated.
		return reconcile.Result{RequeueAfter: conflictRecheck}, nil
	case !apierrors.IsNotFound(err):
		return reconcile.Result{}, err
	}
	r.warnAll(members, ReasonServiceConflict, "")
	if err := r.Client.Create(ctx, want); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return requeueSoon, nil
		}
		return reconcile.Result{}, fmt.Errorf("creating Service %s/%s: %w", want.Namespace, want.Name, err)
	}
	log.FromContext(ctx).Info("created Service", "ports", len(want.Spec.Ports), "members", len(members))
	r.eventAll(members, corev1.EventTypeNormal, ReasonServiceCreated, "virtmesh created Service %q: %s", want.Name, describe(want))
	return reconcile.Result{}, nil
}

func (r *ServiceReconciler) delete(ctx context.Context, svc *corev1.Service, members []Member, why string) (reconcile.Result, error) {
	err := r.Client.Delete(ctx, svc, client.Preconditions{UID: &svc.UID, ResourceVersion: &svc.ResourceVersion})
	if apierrors.IsConflict(err) {
		return requeueSoon, nil
	}
	if client.IgnoreNotFound(err) != nil {
		return reconcile.Result{}, fmt.Errorf("deleting Service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	msg := fmt.Sprintf(why, svc.Name)
	log.FromContext(ctx).Info("deleted Service", "why", msg)
	// Tell the owners that are still there (e.g. a VM that opted out).
	for _, o := range svc.OwnerReferences {
		if isMemberKind(o) {
			ref := &corev1.ObjectReference{APIVersion: o.APIVersion, Kind: o.Kind, Name: o.Name, Namespace: svc.Namespace, UID: o.UID}
			r.Recorder.Eventf(ref, corev1.EventTypeNormal, ReasonServiceDeleted, "virtmesh deleted Service %q: %s", svc.Name, msg)
		}
	}
	for _, m := range members {
		if !ownsService(svc, m.UID) {
			r.Recorder.Eventf(m.ref(), corev1.EventTypeNormal, ReasonServiceDeleted, "virtmesh deleted Service %q: %s", svc.Name, msg)
		}
	}
	return reconcile.Result{}, nil
}

func ownsService(svc *corev1.Service, uid types.UID) bool {
	for _, o := range svc.OwnerReferences {
		if o.UID == uid {
			return true
		}
	}
	return false
}

// members are the meshed VMs and standalone VMIs of app that want a Service.
func (r *ServiceReconciler) members(ctx context.Context, ns namespaceInfo, app string) ([]Member, error) {
	var out []Member
	vms := &kubevirtv1.VirtualMachineList{}
	if err := r.Client.List(ctx, vms, client.InNamespace(ns.name), client.MatchingFields{appIndex: app}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	for i := range vms.Items {
		vm := &vms.Items[i]
		annotations := vmAnnotations(vm)
		if vm.DeletionTimestamp != nil || !vmMeshed(ns, vm, r.Config.Mesh) || annotations[mesh.ServiceAnnotation] == "false" {
			continue
		}
		out = append(out, Member{Kind: "VirtualMachine", Namespace: ns.name, Name: vm.Name, UID: vm.UID, Ports: podPorts(&vm.Spec.Template.Spec), Annotations: annotations})
	}
	vmis := &kubevirtv1.VirtualMachineInstanceList{}
	if err := r.Client.List(ctx, vmis, client.InNamespace(ns.name), client.MatchingFields{appIndex: app}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	for i := range vmis.Items {
		vmi := &vmis.Items[i]
		if vmi.DeletionTimestamp != nil || !vmiMeshed(ns, vmi, r.Config.Mesh) || vmi.Annotations[mesh.ServiceAnnotation] == "false" {
			continue
		}
		out = append(out, Member{Kind: "VirtualMachineInstance", Namespace: ns.name, Name: vmi.Name, UID: vmi.UID, Ports: podPorts(&vmi.Spec), Annotations: vmi.Annotations})
	}
	return out, nil
}

func (m Member) ref() *corev1.ObjectReference {
	return &corev1.ObjectReference{APIVersion: kubevirtv1.SchemeGroupVersion.String(), Kind: m.Kind, Name: m.Name, Namespace: m.Namespace, UID: m.UID}
}

func describe(svc *corev1.Service) string {
	var ports []string
	for _, p := range svc.Spec.Ports {
		ports = append(ports, fmt.Sprintf("%s %d/%s", p.Name, p.Port, p.Protocol))
	}
	return fmt.Sprintf("selector %s=%s, ports %s", mesh.AppLabel, svc.Spec.Selector[mesh.AppLabel], strings.Join(ports, ", "))
}

func (r *ServiceReconciler) eventAll(members []Member, typ, reason, format string, args ...any) {
	for _, m := range members {
		r.Recorder.Eventf(m.ref(), typ, reason, format, args...)
	}
}

// warnAll sends a Warning to every member once per distinct message; an empty
// message marks the problem solved, so it is reported again if it comes back.
func (r *ServiceReconciler) warnAll(members []Member, reason, msg string) {
	for _, m := range members {
		r.warnOnce(m, reason, msg)
	}
}

func (r *ServiceReconciler) warnOnce(m Member, reason, msg string) {
	if r.warned.set(m.UID, reason, msg) && msg != "" {
		r.Recorder.Event(m.ref(), corev1.EventTypeWarning, reason, "virtmesh: "+msg)
	}
}

// warnings remembers the last Warning of each reason sent to each object, so a
// resync repeats none: at steady state virtmesh makes no API writes at all.
type warnings struct {
	mu   sync.Mutex
	last map[types.UID]map[string]string
}

// set records msg and reports whether it differs from the last one.
func (w *warnings) set(uid types.UID, reason, msg string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		w.last = map[types.UID]map[string]string{}
	}
	if w.last[uid][reason] == msg {
		return false
	}
	if msg == "" {
		delete(w.last[uid], reason)
		if len(w.last[uid]) == 0 {
			delete(w.last, uid)
		}
		return true
	}
	if w.last[uid] == nil {
		w.last[uid] = map[string]string{}
	}
	w.last[uid][reason] = msg
	return true
}

func (w *warnings) forget(uid types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.last, uid)
}

func setupServiceController(mgr ctrl.Manager, cfg Config) error {
	r := &ServiceReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Config: cfg,
		Recorder: mgr.GetEventRecorderFor("virtmesh-service")}
	return ctrl.NewControllerManagedBy(mgr).
		Named("service").
		Watches(&corev1.Service{}, &handler.EnqueueRequestForObject{}).
		Watches(&kubevirtv1.VirtualMachine{}, r.appHandler()).
		Watches(&kubevirtv1.VirtualMachineInstance{}, r.appHandler()).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.appsInNamespace), builder.OnlyMetadata,
			builder.WithPredicates(predicate.Or(predicate.LabelChangedPredicate{}, deletionChanged()))).
		WithOptions(controller.Options{MaxConcurrentReconciles: cfg.Workers}).
		Complete(r)
}

// appOf is the request a VM or standalone VMI maps to; VMIs of a VM map to
// nothing (their VM stands for them).
func appOf(o client.Object) (reconcile.Request, bool) {
	switch o := o.(type) {
	case *kubevirtv1.VirtualMachine:
		return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.Namespace, Name: mesh.VMApp(o)}}, true
	case *kubevirtv1.VirtualMachineInstance:
		if mesh.OwnedByVM(&o.ObjectMeta) {
			return reconcile.Request{}, false
		}
		return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.Namespace, Name: mesh.VMIApp(&o.ObjectMeta)}}, true
	}
	return reconcile.Request{}, false
}

// appHandler enqueues the app of a VM or VMI, and on an update that changes
// its app, the app it leaves too.
func (r *ServiceReconciler) appHandler() handler.EventHandler {
	type q = workqueue.TypedRateLimitingInterface[reconcile.Request]
	add := func(queue q, o client.Object) {
		if req, ok := appOf(o); ok && req.Name != "" {
			queue.Add(req)
		}
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, queue q) { add(queue, e.Object) },
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, queue q) {
			if e.ObjectOld.GetResourceVersion() != e.ObjectNew.GetResourceVersion() && !trimmedChanged(e.ObjectOld, e.ObjectNew) {
				return // a status update: nothing a Service depends on
			}
			add(queue, e.ObjectOld)
			add(queue, e.ObjectNew)
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, queue q) {
			r.warned.forget(e.Object.GetUID())
			add(queue, e.Object)
		},
		GenericFunc: func(_ context.Context, e event.GenericEvent, queue q) { add(queue, e.Object) },
	}
}

// appsInNamespace: a namespace's labels changed, so every app in it may have
// joined or left the mesh.
func (r *ServiceReconciler) appsInNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	seen := map[reconcile.Request]bool{}
	vms := &kubevirtv1.VirtualMachineList{}
	vmis := &kubevirtv1.VirtualMachineInstanceList{}
	svcs := &corev1.ServiceList{}
	opts := []client.ListOption{client.InNamespace(o.GetName()), client.UnsafeDisableDeepCopy}
	if err := r.Client.List(ctx, vms, opts...); err == nil {
		for i := range vms.Items {
			if req, ok := appOf(&vms.Items[i]); ok {
				seen[req] = true
			}
		}
	}
	if err := r.Client.List(ctx, vmis, opts...); err == nil {
		for i := range vmis.Items {
			if req, ok := appOf(&vmis.Items[i]); ok {
				seen[req] = true
			}
		}
	}
	if err := r.Client.List(ctx, svcs, opts...); err == nil {
		for i := range svcs.Items {
			seen[reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&svcs.Items[i])}] = true
		}
	}
	out := make([]reconcile.Request, 0, len(seen))
	for req := range seen {
		out = append(out, req)
	}
	return out
}
