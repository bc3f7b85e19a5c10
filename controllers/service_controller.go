package controllers

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;patch;delete

// conflictRecheck is how often an app whose Service name is taken by someone
// else's Service is looked at again.
const conflictRecheck = 2 * time.Minute

// appIndex indexes VMs and VMIs by the app their VMIs carry.
const appIndex = "virtmesh.io/app"

// ServiceReconciler keeps one Service per app for meshed VMs and standalone
// VMIs. Its requests are namespace/app; the Service is named after the app.
type ServiceReconciler struct {
	Client    client.Client // the manager's, with FieldOwner: reads from the cache
	APIReader client.Reader // reads the API server, for Services virtmesh does not cache
	Mesh      mesh.Config
	Config    Config
	notifier
	applied appliedCache
	taken   sync.Map // namespace/name → struct{}: Services virtmesh found someone else's
	// created: namespace/name → time.Time, Services virtmesh created that
	// its cache has not shown yet. Another reconcile of the app meanwhile
	// (a second VM of the app, say) waits for the cache rather than create
	// it again (a 409 and a read).
	created sync.Map
}

// createdCacheWait is how long a created Service missing from the cache is
// taken for the cache lagging, not for the Service gone.
const createdCacheWait = 10 * time.Second

// NewServiceReconciler builds the reconciler on the manager's clients.
func NewServiceReconciler(mgr ctrl.Manager, events *eventQueue, meshCfg mesh.Config, cfg Config) *ServiceReconciler {
	return &ServiceReconciler{Client: client.WithFieldOwner(mgr.GetClient(), FieldOwner), APIReader: mgr.GetAPIReader(),
		Mesh: meshCfg, Config: cfg, notifier: notifier{recorder: events.recorder(mgr.GetEventRecorderFor("virtmesh-service"))}}
}

// SetupWithManager watches the VMs and VMIs of every app, virtmesh's
// Services, and namespace labels.
func (r *ServiceReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("service").
		Watches(&corev1.Service{}, &handler.EnqueueRequestForObject{}).
		Watches(&kubevirtv1.VirtualMachine{}, appHandler(r.warned.forget)).
		Watches(&kubevirtv1.VirtualMachineInstance{}, appHandler(r.warned.forget)).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(appsInNamespace(r.Client)), builder.OnlyMetadata,
			builder.WithPredicates(namespaceChanged())).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Config.Workers}).
		Complete(r)
}

// Reconcile makes the Service of one app match the VMs and VMIs it serves.
func (r *ServiceReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	ns, err := getNamespace(ctx, r.Client, req.Namespace)
	if err != nil || !ns.exists || ns.terminating {
		if err == nil {
			r.created.Delete(req.Namespace + "/" + req.Name)
		}
		return reconcile.Result{}, err
	}
	var have *corev1.Service
	cached := &corev1.Service{}
	key := req.Namespace + "/" + req.Name
	switch err := r.Client.Get(ctx, req.NamespacedName, cached); { // the cache holds only Services labelled as virtmesh's
	case err == nil:
		r.created.Delete(key)
		if Virtmeshs(cached) {
			have = cached
		}
	case apierrors.IsNotFound(err):
		if at, ok := r.created.Load(key); ok {
			if wait := createdCacheWait - time.Since(at.(time.Time)); wait > 0 {
				// Its create event requeues the app as soon as the cache has it.
				return reconcile.Result{RequeueAfter: min(wait, time.Second)}, nil
			}
			r.created.Delete(key)
		}
		r.applied.forget(req.Namespace, req.Name)
	default:
		return reconcile.Result{}, err
	}
	app := req.Name
	members, err := r.members(ctx, ns, app)
	if err != nil {
		return reconcile.Result{}, err
	}
	if have != nil {
		if by := takenOverBy(have); by != "" {
			return r.release(ctx, have, by)
		}
	}
	want := r.desired(ns, app, members)
	if want == nil {
		r.taken.Delete(req.Namespace + "/" + req.Name)
		r.warnAll(members, ReasonServiceConflict, "") // no Service wanted: no conflict either
		if have != nil {
			return r.delete(ctx, have, members, deleteReason(members, app))
		}
		return reconcile.Result{}, nil
	}
	return r.ensure(ctx, have, want, members)
}

// desired is the Service app should have, or nil; it warns the members about
// what keeps them from having one.
func (r *ServiceReconciler) desired(ns namespaceInfo, app string, members []Member) *corev1.Service {
	if len(members) == 0 {
		return nil
	}
	if why := ValidServiceName(app); why != "" {
		r.warnAll(members, ReasonInvalidAppName, fmt.Sprintf(
			"app label %q cannot name a Service (%s): virtmesh gives this VM no Service; use an app label that is a DNS-1035 label", app, why))
		return nil
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
		return nil
	}
	r.warnAll(members, ReasonNoPorts, "")
	return want
}

func deleteReason(members []Member, app string) string {
	if len(members) == 0 {
		return fmt.Sprintf("no meshed VM or VMI of app %q is left to serve", app)
	}
	return fmt.Sprintf("no VM or VMI of app %q declares a port any more", app)
}

// ensure makes the Service want. have is virtmesh's Service from the cache,
// or nil: then the Service is created, never applied, so a Service of that
// name someone else creates meanwhile makes the create fail rather than be
// merged into.
func (r *ServiceReconciler) ensure(ctx context.Context, have, want *corev1.Service, members []Member) (reconcile.Result, error) {
	if have == nil {
		return r.create(ctx, want, members)
	}
	r.warnAll(members, ReasonServiceConflict, "")
	if hasUpdateEntry(have) {
		// virtmesh created it (or an older virtmesh wrote it): the fields
		// are held by an Update entry. Moving them to server-side apply is a
		// write that matters only before an apply (so that a field virtmesh
		// stops applying is removed); a Service that already is as wanted
		// stays as it is.
		if asWanted(have, want) {
			return reconcile.Result{}, nil
		}
		return r.migrate(ctx, have)
	}
	ac := serviceApplyConfiguration(want)
	if r.applied.applied(have, ac) {
		return reconcile.Result{}, nil
	}
	// Only over the version virtmesh has seen: a change it has not seen yet
	// makes the apply fail, and the reconcile runs again.
	ac.WithResourceVersion(have.ResourceVersion)
	if err := r.Client.Apply(ctx, ac, client.ForceOwnership); err != nil {
		return requeueOnConflict(fmt.Errorf("applying Service %s/%s: %w", want.Namespace, want.Name, err))
	}
	if changesVisible(have, want) {
		log.FromContext(ctx).Info("updated Service", "ports", len(want.Spec.Ports), "members", len(members))
		r.eventAll(members, ReasonServiceUpdated, "virtmesh updated Service %q: %s", want.Name, describe(want))
	}
	return reconcile.Result{}, nil
}

// create creates want: one request. The create's fields stay under an
// Update entry until virtmesh first has to change the Service (ensure moves
// them to server-side apply then). It reads the Service only when the name
// is taken, to tell why, and then reads before it tries again: a name
// someone else holds costs a read per recheck, never a write.
func (r *ServiceReconciler) create(ctx context.Context, want *corev1.Service, members []Member) (reconcile.Result, error) {
	key := want.Namespace + "/" + want.Name
	if _, known := r.taken.Load(key); known {
		if res, free, err := r.nameTaken(ctx, want, members); !free {
			return res, err
		}
	}
	switch err := r.Client.Create(ctx, want.DeepCopy()); {
	case apierrors.IsAlreadyExists(err):
		res, _, err := r.nameTaken(ctx, want, members)
		return cmp.Or(res, requeueSoon), err
	case err != nil:
		return requeueOnConflict(fmt.Errorf("creating Service %s/%s: %w", want.Namespace, want.Name, err))
	}
	r.created.Store(key, time.Now())
	r.warnAll(members, ReasonServiceConflict, "")
	log.FromContext(ctx).Info("created Service", "ports", len(want.Spec.Ports), "members", len(members))
	r.eventAll(members, ReasonServiceCreated, "virtmesh created Service %q: %s", want.Name, describe(want))
	// Look once more after a while: a Service deleted or relabelled before
	// virtmesh's watch ever saw it (the watch broken meanwhile) brings no
	// event, and resyncs of VMs and VMIs do not reconcile apps.
	return reconcile.Result{RequeueAfter: createdRecheck}, nil
}

// createdRecheck is when a Service virtmesh created is looked at again.
const createdRecheck = time.Minute

// asWanted reports whether have, which virtmesh created, shows what want
// applies: its labels, selector, ports and owners.
func asWanted(have, want *corev1.Service) bool {
	for k, v := range want.Labels {
		if got, ok := have.Labels[k]; !ok || got != v {
			return false
		}
	}
	return !changesVisible(have, want)
}

// migrate moves the fields virtmesh's create (or an older virtmesh) wrote to
// its apply field manager, reading the Service from the API server: the
// cached copy lacks other managers' entries, which the patch must keep.
func (r *ServiceReconciler) migrate(ctx context.Context, have *corev1.Service) (reconcile.Result, error) {
	live := &corev1.Service{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(have), live); err != nil {
		return requeueOnConflict(err)
	}
	if !Virtmeshs(live) {
		return requeueSoon, nil // changed hands since the cache saw it
	}
	migrated, err := migrateFieldOwner(ctx, r.Client, live)
	if err != nil {
		return requeueOnConflict(err)
	}
	if migrated {
		log.FromContext(ctx).V(1).Info("moved Service fields to server-side apply")
	}
	return requeueSoon, nil
}

// nameTaken reads the Service of want's name, which the cache does not hold
// (the cache holds only Services labelled as virtmesh's): someone else's is
// never touched. free says the name is free to create.
func (r *ServiceReconciler) nameTaken(ctx context.Context, want *corev1.Service, members []Member) (res reconcile.Result, free bool, err error) {
	key := want.Namespace + "/" + want.Name
	live := &corev1.Service{}
	switch err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(want), live); {
	case apierrors.IsNotFound(err):
		r.taken.Delete(key)
		return reconcile.Result{}, true, nil
	case err != nil:
		return reconcile.Result{}, false, err
	case Virtmeshs(live):
		r.taken.Delete(key)
		return requeueSoon, false, nil // ours; the cache is behind
	case wroteFields(live) && hasMemberOwner(live):
		// virtmesh's once, taken over by changing or removing its label:
		// let go of it, or the garbage collector deletes it with the VMs.
		r.taken.Store(key, struct{}{})
		res, err := r.releaseLive(ctx, live, takenOverBy(live))
		return res, false, err
	default:
		r.taken.Store(key, struct{}{})
		r.warnAll(members, ReasonServiceConflict, fmt.Sprintf("Service %q already exists and virtmesh did not create it, so virtmesh "+
			"leaves it as it is; make sure it selects %s=%s and lists the VM's ports, or delete it and virtmesh will create one",
			want.Name, mesh.AppLabel, want.Name))
		// virtmesh does not watch Services it did not create, so look again
		// later: if the owner deletes theirs, virtmesh creates its own. A read,
		// not a write; the warning is not repeated.
		return reconcile.Result{RequeueAfter: conflictRecheck}, false, nil
	}
}

// release stops managing a Service someone else has changed, and tells the
// VMs' owners; virtmesh never reverts such a change.
func (r *ServiceReconciler) release(ctx context.Context, have *corev1.Service, by string) (reconcile.Result, error) {
	live := &corev1.Service{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(have), live); err != nil {
		return requeueOnConflict(err)
	}
	if Virtmeshs(live) && takenOverBy(live) == "" {
		return requeueSoon, nil // the cache is behind
	}
	if !wroteFields(live) {
		return reconcile.Result{}, nil // released already
	}
	if by == "" {
		by = takenOverBy(live)
	}
	return r.releaseLive(ctx, live, by)
}

// releaseLive releases live (read from the API server) and tells its owners.
func (r *ServiceReconciler) releaseLive(ctx context.Context, live *corev1.Service, by string) (reconcile.Result, error) {
	owners := slices.Clone(live.OwnerReferences) // the patch's answer replaces them
	if err := release(ctx, r.Client, live); err != nil {
		return requeueOnConflict(err)
	}
	who := "someone else"
	if by != "" {
		who = fmt.Sprintf("%q", by)
	}
	msg := fmt.Sprintf("Service %q was changed by %s (its selector, ports or %s label), so virtmesh no longer manages it: "+
		"it removed its owner references (the Service now stays when the VMs go) and leaves the rest as it is; "+
		"delete the Service and virtmesh creates its own again", live.Name, who, mesh.ManagedByLabel)
	log.FromContext(ctx).Info("released a Service someone else changed", "manager", by)
	for _, o := range owners {
		if isMemberKind(o) {
			r.recorder.Event(eventRef(o, live.Namespace), corev1.EventTypeWarning, ReasonServiceReleased, "virtmesh: "+msg)
		}
	}
	return reconcile.Result{RequeueAfter: conflictRecheck}, nil
}

// eventRef is an owner (a VM, VMI, replica set or pool) as Events name it.
func eventRef(o metav1.OwnerReference, namespace string) *corev1.ObjectReference {
	return &corev1.ObjectReference{APIVersion: o.APIVersion, Kind: o.Kind, Name: o.Name, Namespace: namespace, UID: o.UID}
}

// hasMemberOwner: a VM, VMI or replica set owns svc, so the garbage
// collector deletes it with them.
func hasMemberOwner(svc *corev1.Service) bool {
	return slices.ContainsFunc(svc.OwnerReferences, isMemberKind)
}

func (r *ServiceReconciler) delete(ctx context.Context, svc *corev1.Service, members []Member, why string) (reconcile.Result, error) {
	err := r.Client.Delete(ctx, svc, client.Preconditions{UID: &svc.UID, ResourceVersion: &svc.ResourceVersion})
	if apierrors.IsConflict(err) {
		return requeueSoon, nil
	}
	if client.IgnoreNotFound(err) != nil {
		return reconcile.Result{}, fmt.Errorf("deleting Service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	log.FromContext(ctx).Info("deleted Service", "why", why)
	// Tell the owners that are still there (e.g. a VM that opted out).
	for _, o := range svc.OwnerReferences {
		if isMemberKind(o) {
			r.recorder.Eventf(eventRef(o, svc.Namespace), corev1.EventTypeNormal, ReasonServiceDeleted, "virtmesh deleted Service %q: %s", svc.Name, why)
		}
	}
	for _, m := range members {
		if !ownsService(svc, m.UID) {
			r.recorder.Eventf(m.ref(), corev1.EventTypeNormal, ReasonServiceDeleted, "virtmesh deleted Service %q: %s", svc.Name, why)
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
// The VMIs of a VirtualMachineInstanceReplicaSet, and the VMs of a
// VirtualMachinePool, count as one member, the replica set or pool: scaling
// it does not rewrite the Service's owners or send Events to every replica.
// A VM whose template says it is out of the mesh is still a member while its
// running VMI is in it (by the VMI's own metadata: the namespace just left
// the mesh, or the owner opted out): that VM keeps its proxy, and Istio
// injects its migrations' pods by the VMI's labels, until it restarts.
func (r *ServiceReconciler) members(ctx context.Context, ns namespaceInfo, app string) ([]Member, error) {
	var out []Member
	groups := map[types.UID]int{} // index in out
	add := func(w workload, annotations map[string]string) {
		m := Member{Kind: w.kind, Namespace: ns.name, Name: w.meta.Name, UID: w.meta.UID, Ports: w.ports(), Annotations: annotations}
		if g := groupOf(w.meta); g != nil {
			if i, ok := groups[g.UID]; ok {
				out[i].Ports = append(out[i].Ports, m.Ports...)
				return
			}
			m.APIVersion, m.Kind, m.Name, m.UID = g.APIVersion, g.Kind, g.Name, g.UID
			m.Ports = slices.Clone(m.Ports)
			groups[g.UID] = len(out)
		}
		out = append(out, m)
	}
	// VMs (listed first) out of the mesh by their template, by name, until
	// their VMI (listed after) says whether it is in.
	outByTemplate := map[string]workload{}
	err := eachWorkload(ctx, r.Client, func(w workload) bool {
		annotations := w.annotations()
		if w.deleting() || annotations[mesh.ServiceAnnotation] == "false" {
			return true
		}
		switch {
		case !w.standalone():
			if vm, ok := outByTemplate[w.meta.Name]; ok && controlledBy(w.meta, vm.meta.UID) && !w.vmi.IsFinal() && w.meshed(ns, r.Mesh) {
				add(vm, vm.annotations())
				delete(outByTemplate, w.meta.Name)
			}
		case w.meshed(ns, r.Mesh):
			add(w, annotations)
		case w.vm != nil:
			outByTemplate[w.meta.Name] = w
		}
		return true
	}, client.InNamespace(ns.name), client.MatchingFields{appIndex: app})
	return out, err
}

// controlledBy: meta's controller is the object with uid (a VMI of the same
// name as a VM may be another's: its VM replaced since, or made up).
func controlledBy(meta *metav1.ObjectMeta, uid types.UID) bool {
	ref := metav1.GetControllerOfNoCopy(meta)
	return ref != nil && ref.UID == uid
}

// groupOf is the replica set that controls a VMI, or the pool that controls
// a VM, or nil.
func groupOf(meta *metav1.ObjectMeta) *metav1.OwnerReference {
	ref := metav1.GetControllerOfNoCopy(meta)
	if ref == nil || (ref.Kind != "VirtualMachineInstanceReplicaSet" && ref.Kind != "VirtualMachinePool") || !isMemberKind(*ref) {
		return nil
	}
	return ref
}
