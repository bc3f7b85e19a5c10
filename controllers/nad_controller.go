package controllers

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
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

	"github.com/virtmesh/virtmesh/internal/injector"
	"github.com/virtmesh/virtmesh/internal/mesh"
)

// +kubebuilder:rbac:groups=k8s.cni.cncf.io,resources=network-attachment-definitions,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=kubevirt.io,resources=virtualmachineinstances;virtualmachines,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// NADReconciler keeps the istio-cni NetworkAttachmentDefinition in every mesh
// namespace. Its requests are namespace names.
type NADReconciler struct {
	Client    client.Client // the manager's, with FieldOwner: reads from the cache
	APIReader client.Reader // reads the API server (nil: never)
	Pods      client.Reader // launcher pods (LauncherPods)
	Mesh      mesh.Config
	Config    Config
	Recorder  record.EventRecorder
	reports   nadReports
	// decisions remembers injector.Decide per ConfigMap UID and resourceVersion.
	decisions sync.Map
	// known remembers the last decision read per namespace and revision
	// (string → knownPlan), held while an injector is briefly unreadable.
	known sync.Map
	// unneededSince remembers since when each of virtmesh's NADs has been
	// unneeded (client.ObjectKey → time.Time), for Config.NADCleanupDelay.
	unneededSince sync.Map
	// keptFor remembers, per NAD of virtmesh's kept only because a pod
	// that is not a VM's references it (client.ObjectKey → keptNAD), the
	// pod last named in an Event and when the pods were last listed.
	keptFor sync.Map
	// now is time.Now; tests replace it.
	now func() time.Time
}

// NewNADReconciler builds the reconciler on the manager's client.
func NewNADReconciler(mgr ctrl.Manager, events *eventQueue, meshCfg mesh.Config, cfg Config, pods *LauncherPods) *NADReconciler {
	return &NADReconciler{Client: client.WithFieldOwner(mgr.GetClient(), FieldOwner), APIReader: mgr.GetAPIReader(), Pods: pods, Mesh: meshCfg, Config: cfg,
		Recorder: events.recorder(mgr.GetEventRecorderFor("virtmesh-nad"))}
}

// SetupWithManager watches namespaces, NADs, the VMs and VMIs whose
// membership can make a namespace need one, and (--cni-nad=auto) Istio's
// injectors and their ConfigMaps, which say which NAD that is.
func (r *NADReconciler) SetupWithManager(mgr ctrl.Manager) error {
	toNS := handler.EnqueueRequestsFromMapFunc(toNamespace)
	all := handler.EnqueueRequestsFromMapFunc(allNamespaces(r.Client))
	b := ctrl.NewControllerManagedBy(mgr).
		Named("nad").
		For(&corev1.Namespace{}, builder.OnlyMetadata, builder.WithPredicates(namespaceChanged())).
		Watches(&nadv1.NetworkAttachmentDefinition{}, toNS).
		Watches(&kubevirtv1.VirtualMachineInstance{}, forgetOnDelete{toNS, r.reports.said.forget}, builder.WithPredicates(membershipChanged())).
		Watches(&kubevirtv1.VirtualMachine{}, forgetOnDelete{toNS, r.reports.said.forget}, builder.WithPredicates(membershipChanged())).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Config.Workers})
	if r.Config.NADMode == NADAuto {
		// A shared NAD (in namespace default, say) concerns every namespace.
		// Only its coming and going matters, not edits or resyncs, and only
		// for a NAD an installed injector references: a tenant creating,
		// deleting or editing NADs in a loop must not sweep every namespace.
		b = b.Watches(&nadv1.NetworkAttachmentDefinition{}, all, builder.WithPredicates(r.sharedNADCameOrWent())).
			Watches(&admissionregistrationv1.MutatingWebhookConfiguration{}, all)
		if len(r.Config.readableIstioNamespaces()) > 0 {
			b = b.Watches(&corev1.ConfigMap{}, all, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
				return strings.HasPrefix(o.GetName(), injectorConfigMapPrefix)
			})))
		}
	}
	return b.Complete(r)
}

// foreignSaid is what is remembered as said about a foreign NAD: its
// message and its UID, so the same NAD is reported once, and one created in
// its place again.
func foreignSaid(msg string, uid types.UID) string {
	if msg == "" {
		return ""
	}
	return msg + "\x00" + string(uid)
}

// excludesNamespace reports whether an istio-cni config (a plugin, or the
// istio-cni plugin of a list) excludes namespace ns: istio-cni then sets up
// no redirection for its pods.
func excludesNamespace(config, ns string) bool {
	type plugin struct {
		Type       string `json:"type"`
		Kubernetes struct {
			ExcludeNamespaces []string `json:"exclude_namespaces"`
		} `json:"kubernetes"`
	}
	var c struct {
		plugin
		Plugins []plugin `json:"plugins"`
	}
	if json.Unmarshal([]byte(config), &c) != nil {
		return false
	}
	for _, p := range append(c.Plugins, c.plugin) {
		if p.Type == "istio-cni" && slices.Contains(p.Kubernetes.ExcludeNamespaces, ns) {
			return true
		}
	}
	return false
}

// cniType is the plugin type a NAD's config names ("" if none or unreadable).
func cniType(config string) string {
	var c struct {
		Type    string `json:"type"`
		Plugins []struct {
			Type string `json:"type"`
		} `json:"plugins"`
	}
	if json.Unmarshal([]byte(config), &c) != nil {
		return ""
	}
	if c.Type == "" && len(c.Plugins) > 0 {
		for _, p := range c.Plugins {
			if p.Type == "istio-cni" {
				return p.Type
			}
		}
		return c.Plugins[0].Type
	}
	return c.Type
}

// forgetOnDelete drops what was said to a VM or VMI when it is deleted.
type forgetOnDelete struct {
	handler.EventHandler
	forget func(types.UID)
}

func (f forgetOnDelete) Delete(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	f.forget(e.Object.GetUID())
	f.EventHandler.Delete(ctx, e, q)
}

// sharedNADCameOrWent passes the creation and deletion of NADs virtmesh did
// not make that an installed injector references as its shared NAD (all of
// them if the injectors cannot be read from the cache).
func (r *NADReconciler) sharedNADCameOrWent() predicate.Predicate {
	shared := func(o client.Object) bool {
		if Virtmeshs(o) {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		targets, err := r.sharedTargets(ctx)
		return err != nil || targets[client.ObjectKeyFromObject(o)]
	}
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return shared(e.Object) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return shared(e.Object) },
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// Reconcile keeps the NAD a namespace's meshed VMs need: virtmesh's own
// where the injector references a per-namespace NAD nobody else creates; a
// check and a report where it references a shared one or Maistra's; nothing
// otherwise. virtmesh's own NADs that are no longer needed are deleted; a
// NAD someone else created is never touched.
func (r *NADReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	ns, err := getNamespace(ctx, r.Client, req.Name)
	if err != nil || !ns.exists || ns.terminating {
		// Nothing is done in a terminating namespace: it is going away with its NADs.
		if err == nil {
			r.reports.forget(req.Name)
			r.forgetNADs(req.Name, nil)
			r.known.Range(func(k, _ any) bool {
				if strings.HasPrefix(k.(string), req.Name+"/") {
					r.known.Delete(k)
				}
				return true
			})
		}
		return reconcile.Result{}, err
	}
	need, why, err := r.needsNAD(ctx, ns)
	if err != nil {
		return reconcile.Result{}, err
	}
	var plans planSet
	if need {
		plans, err = r.plans(ctx, ns)
		switch {
		case errors.Is(err, errCacheBehind):
			return requeueSoon, nil
		case err != nil:
			return reconcile.Result{}, err
		}
	}
	wanted := map[string]bool{}
	for _, p := range plans.list {
		if p.Kind == injector.PerNamespace {
			wanted[p.Name] = true
		}
	}
	r.reports.keepForeign(ns.name, wanted)
	res, later, err := r.deleteUnwanted(ctx, ns, wanted, why)
	if err != nil || !res.IsZero() {
		return res, err
	}
	for name := range wanted {
		if res, err := r.ensure(ctx, ns, DesiredNAD(ns.name, name), why); err != nil || !res.IsZero() {
			return res, err
		}
	}
	// later: an unneeded NAD of virtmesh's waits out --nad-cleanup-delay, or
	// a plan is held over an unreadable injector.
	return reconcile.Result{RequeueAfter: sooner(later, plans.recheck)}, r.report(ctx, ns, plans)
}

// ensure creates or restores virtmesh's NAD want.
func (r *NADReconciler) ensure(ctx context.Context, ns namespaceInfo, want *nadv1.NetworkAttachmentDefinition, why string) (reconcile.Result, error) {
	have := &nadv1.NetworkAttachmentDefinition{}
	err := r.Client.Get(ctx, client.ObjectKeyFromObject(want), have)
	switch {
	case apierrors.IsNotFound(err):
		// Created, never applied: a NAD of that name someone else creates
		// meanwhile makes the create fail rather than be merged into.
		// A foreign NAD of that name is gone: one created again is warned about again.
		r.reports.setForeign(ns.name, want.Name, false)
		r.reports.said.set(types.UID("namespace/"+ns.name), "foreign-nad/"+want.Name, "")
		if err := r.Client.Create(ctx, want); err != nil {
			return requeueOnConflict(fmt.Errorf("creating NetworkAttachmentDefinition %s/%s: %w", ns.name, want.Name, err))
		}
		log.FromContext(ctx).Info("created NetworkAttachmentDefinition", "name", want.Name, "why", why)
		r.Recorder.Eventf(nadRef(want), corev1.EventTypeNormal, ReasonNADCreated,
			"virtmesh created NetworkAttachmentDefinition %q so meshed VMs can start here (%s)", want.Name, why)
	case err != nil:
		return reconcile.Result{}, err
	case !Virtmeshs(have):
		// Someone else's: never touched, but one that runs another plugin
		// than istio-cni lets meshed VMs' traffic bypass their proxy.
		msg := ""
		switch t := cniType(have.Spec.Config); {
		case t != "" && t != "istio-cni":
			msg = fmt.Sprintf("NetworkAttachmentDefinition %q here was not created by virtmesh and runs the CNI plugin %q, not istio-cni: "+
				"meshed VMs' pods get that instead of Istio's traffic redirection, so their traffic can bypass the proxy (mTLS, policy); "+
				"delete it to have virtmesh create the istio-cni one", have.Name, t)
		case t == "istio-cni" && excludesNamespace(have.Spec.Config, ns.name):
			msg = fmt.Sprintf("NetworkAttachmentDefinition %q here was not created by virtmesh and runs istio-cni with a configuration "+
				"whose kubernetes.exclude_namespaces names this namespace: istio-cni sets up no traffic redirection for its pods, so "+
				"meshed VMs' traffic can bypass the proxy (mTLS, policy); delete it to have virtmesh create the istio-cni one", have.Name)
		}
		r.reports.setForeign(ns.name, have.Name, msg != "")
		// Said once per NAD: one deleted and created again is another.
		if r.reports.said.set(types.UID("namespace/"+ns.name), "foreign-nad/"+have.Name, foreignSaid(msg, have.UID)) && msg != "" {
			log.FromContext(ctx).Info("a NetworkAttachmentDefinition of the istio-cni name lets meshed VMs' traffic bypass the proxy",
				"name", have.Name, "type", cniType(have.Spec.Config), "uid", have.UID)
			foreignNADsFound.Inc()
			r.Recorder.Event(nadRef(have), corev1.EventTypeWarning, ReasonNADNotIstioCNI, "virtmesh: "+msg)
		}
	case !nadUpToDate(have, want):
		r.reports.setForeign(ns.name, want.Name, false)
		if err := r.restore(ctx, want, have.ResourceVersion); err != nil {
			return requeueOnConflict(err)
		}
		r.Recorder.Eventf(nadRef(have), corev1.EventTypeNormal, ReasonNADRestored,
			"virtmesh restored the empty config of its NetworkAttachmentDefinition %q (istio-cni reads its own configuration)", want.Name)
	}
	return reconcile.Result{}, nil
}

// deleteUnwanted deletes virtmesh's own NADs in the namespace but the wanted
// ones, each once it has been unneeded for Config.NADCleanupDelay; later is
// when the next one is due (0: none waits).
func (r *NADReconciler) deleteUnwanted(ctx context.Context, ns namespaceInfo, wanted map[string]bool, why string) (reconcile.Result, time.Duration, error) {
	nads := &nadv1.NetworkAttachmentDefinitionList{}
	if err := r.Client.List(ctx, nads, client.InNamespace(ns.name)); err != nil {
		return reconcile.Result{}, 0, err
	}
	var shared map[client.ObjectKey]bool
	var later time.Duration
	for i := range nads.Items {
		have := &nads.Items[i]
		key := client.ObjectKeyFromObject(have)
		if wanted[have.Name] || !Virtmeshs(have) {
			r.unneededSince.Delete(key)
			r.keptFor.Delete(key)
			continue
		}
		if shared == nil && r.Config.NADMode == NADAuto {
			var err error
			if shared, err = r.sharedTargets(ctx); err != nil {
				return reconcile.Result{}, 0, err
			}
		}
		if shared[key] {
			r.unneededSince.Delete(key)
			r.keptFor.Delete(key)
			continue // other namespaces' VMs reference it
		}
		if len(wanted) == 0 && !strings.Contains(why, "not in the mesh") {
			why = "the Istio injector here does not reference a per-namespace NAD"
		}
		if pod, err := r.podReferencing(ctx, key); err != nil {
			return reconcile.Result{}, 0, err
		} else if pod != "" {
			// A pod that has not started (or restarts its sandbox) needs it.
			log.FromContext(ctx).V(1).Info("NetworkAttachmentDefinition unneeded but still referenced: keeping it", "name", have.Name, "pod", pod)
			later = sooner(later, nadInUseRecheck)
			continue
		}
		if wait := r.cleanupWait(key); wait > 0 {
			// An injector reinstalled by Helm, or a label removed and put
			// back, does not delete a NAD pods are about to reference.
			log.FromContext(ctx).V(1).Info("NetworkAttachmentDefinition unneeded: deleting it after --nad-cleanup-delay", "name", have.Name, "in", wait, "why", why)
			later = sooner(later, wait)
			continue
		}
		// Istio injects every pod of a mesh namespace, not only VMs: in
		// per-namespace mode theirs reference this NAD too, and a pod whose
		// sandbox is re-created (a node reboot) fails without it.
		prefer := ""
		if k, ok := r.keptFor.Load(key); ok {
			if wait := r.inUseByOthersRecheck() - r.clock().Sub(k.(keptNAD).at); wait > 0 {
				later = sooner(later, wait) // each look lists the namespace's pods
				continue
			}
			prefer = k.(keptNAD).pod // one Event while that pod lasts, whatever else comes and goes
		}
		if pod, err := r.anyPodReferencing(ctx, key, prefer); err != nil {
			return reconcile.Result{}, 0, err
		} else if pod != "" {
			if told, _ := r.keptFor.Swap(key, keptNAD{pod: pod, at: r.clock()}); told == nil || told.(keptNAD).pod != pod {
				log.FromContext(ctx).Info("NetworkAttachmentDefinition unneeded by VMs but referenced by another pod: keeping it", "name", have.Name, "pod", pod)
				// On the NAD, in its namespace: the Event names a pod of
				// that namespace, which a Namespace's Event (stored in
				// default) would show to anyone who reads Events there.
				r.Recorder.Eventf(nadRef(have), corev1.EventTypeNormal, ReasonNADKept, "virtmesh keeps its NetworkAttachmentDefinition %q "+
					"although %s: pod %s references it (its sandbox would not start again without it); virtmesh deletes it once no "+
					"running pod references it", have.Name, why, pod)
			}
			later = sooner(later, r.inUseByOthersRecheck())
			continue
		}
		err := r.Client.Delete(ctx, have, client.Preconditions{UID: &have.UID, ResourceVersion: &have.ResourceVersion})
		if client.IgnoreNotFound(err) != nil {
			res, err := requeueOnConflict(fmt.Errorf("deleting NetworkAttachmentDefinition %s/%s: %w", ns.name, have.Name, err))
			return res, 0, err
		}
		r.unneededSince.Delete(key)
		r.keptFor.Delete(key)
		log.FromContext(ctx).Info("deleted NetworkAttachmentDefinition", "name", have.Name, "why", why)
		r.Recorder.Eventf(nadRef(have), corev1.EventTypeNormal, ReasonNADDeleted,
			"virtmesh deleted its NetworkAttachmentDefinition %q: %s", have.Name, why)
	}
	// Forget NADs of this namespace that are gone (someone else deleted
	// one while it waited or was kept).
	present := make(map[client.ObjectKey]bool, len(nads.Items))
	for i := range nads.Items {
		present[client.ObjectKeyFromObject(&nads.Items[i])] = true
	}
	r.forgetNADs(ns.name, present)
	return reconcile.Result{}, later, nil
}

// forgetNADs drops what unneededSince and keptFor hold for the NADs of
// namespace ns, but those in keep.
func (r *NADReconciler) forgetNADs(ns string, keep map[client.ObjectKey]bool) {
	for _, m := range []*sync.Map{&r.unneededSince, &r.keptFor} {
		m.Range(func(k, _ any) bool {
			if key := k.(client.ObjectKey); key.Namespace == ns && !keep[key] {
				m.Delete(k)
			}
			return true
		})
	}
}

// sooner is the earlier of two waits, 0 meaning none.
func sooner(a, b time.Duration) time.Duration {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

// nadInUseRecheck is how often an unneeded NAD that a launcher pod still
// references is looked at again.
const nadInUseRecheck = 30 * time.Second

// podReferencing names a launcher pod in the NAD's namespace, not finished,
// whose networks annotation references it ("" if none).
func (r *NADReconciler) podReferencing(ctx context.Context, nad client.ObjectKey) (string, error) {
	pods := &corev1.PodList{}
	if err := r.Pods.List(ctx, pods, client.InNamespace(nad.Namespace)); err != nil {
		return "", err
	}
	want := nad.Namespace + "/" + nad.Name
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if slices.Contains(mesh.PodNetworks(p), want) {
			return p.Name, nil
		}
	}
	return "", nil
}

// anyPodReferencing names a pod of the namespace, not finished, that
// references nad (prefer, the one named last time, while it still does), or
// "" when none does. It reads the pods' metadata only (the networks
// annotation), leaving finished pods out by field selector: first from the
// API server's watch cache (cheap: a NAD kept for a pod usually stays kept),
// and when that finds none, once more consistently, page by page, since the
// NAD is deleted on that answer.
func (r *NADReconciler) anyPodReferencing(ctx context.Context, nad client.ObjectKey, prefer string) (string, error) {
	if r.APIReader == nil {
		return "", nil
	}
	want := nad.Namespace + "/" + nad.Name
	running := fields.AndSelectors(fields.OneTermNotEqualSelector("status.phase", string(corev1.PodSucceeded)),
		fields.OneTermNotEqualSelector("status.phase", string(corev1.PodFailed)))
	for _, resourceVersion := range []string{"0", ""} {
		opts := &client.ListOptions{Namespace: nad.Namespace, FieldSelector: running, Raw: &metav1.ListOptions{ResourceVersion: resourceVersion}}
		if resourceVersion == "" {
			opts.Limit = 500
		}
		first := ""
		for {
			pods := &metav1.PartialObjectMetadataList{}
			pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
			if err := r.APIReader.List(ctx, pods, opts); err != nil && resourceVersion == "0" {
				break // the watch cache is not ready: the consistent list decides
			} else if err != nil {
				return "", fmt.Errorf("listing the pods of namespace %s before deleting NetworkAttachmentDefinition %s: %w", nad.Namespace, nad.Name, err)
			}
			for i := range pods.Items {
				if !slices.Contains(mesh.PodNetworks(&corev1.Pod{ObjectMeta: pods.Items[i].ObjectMeta}), want) {
					continue
				}
				if pods.Items[i].Name == prefer || resourceVersion == "" {
					return pods.Items[i].Name, nil // the consistent list runs when the cache found none: prefer is gone
				}
				first = cmp.Or(first, pods.Items[i].Name)
			}
			if pods.Continue == "" {
				break
			}
			opts.Continue = pods.Continue
		}
		if first != "" {
			return first, nil
		}
	}
	return "", nil
}

// keptNAD is what keptFor holds.
type keptNAD struct {
	pod string
	at  time.Time
}

// inUseByOthersRecheck is how often an unneeded NAD that another pod (not a
// VM's) references is looked at again: each look lists the namespace's pods.
// 5 times --nad-cleanup-delay (5 minutes by default), at least 5 seconds.
func (r *NADReconciler) inUseByOthersRecheck() time.Duration {
	return 5 * max(r.Config.NADCleanupDelay, time.Second)
}

// cleanupWait is how much longer virtmesh's NAD key must stay unneeded
// before it is deleted (0: now).
func (r *NADReconciler) cleanupWait(key client.ObjectKey) time.Duration {
	if r.Config.NADCleanupDelay <= 0 {
		return 0
	}
	since, _ := r.unneededSince.LoadOrStore(key, r.clock())
	return r.Config.NADCleanupDelay - r.clock().Sub(since.(time.Time))
}

func (r *NADReconciler) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}

func nsRef(name string) *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "Namespace", APIVersion: "v1", Name: name}
}

// nadRef references a NAD for an Event (the NAD type is not in every
// recorder's scheme).
func nadRef(nad *nadv1.NetworkAttachmentDefinition) *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "NetworkAttachmentDefinition", APIVersion: nadv1.SchemeGroupVersion.String(),
		Namespace: nad.Namespace, Name: nad.Name, UID: nad.UID, ResourceVersion: nad.ResourceVersion}
}

// restore applies want over the given version of virtmesh's NAD (server-side
// apply: virtmesh owns its label and the empty config, nothing else).
func (r *NADReconciler) restore(ctx context.Context, want *nadv1.NetworkAttachmentDefinition, resourceVersion string) error {
	want = want.DeepCopy()
	want.ResourceVersion = resourceVersion
	ac, err := nadApplyConfiguration(want)
	if err != nil {
		return err
	}
	if err := r.Client.Apply(ctx, ac, client.ForceOwnership); err != nil {
		return fmt.Errorf("applying NetworkAttachmentDefinition %s/%s: %w", want.Namespace, want.Name, err)
	}
	return nil
}

// requeueOnConflict retries soon after a write that raced with another; any
// other error is returned (and retried with backoff).
func requeueOnConflict(err error) (reconcile.Result, error) {
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) || apierrors.IsAlreadyExists(err) {
		return requeueSoon, nil
	}
	return reconcile.Result{}, err
}

// needsNAD: the namespace's labels put VMs in the mesh, or it holds a meshed
// VMI or a VM whose VMIs will be meshed.
func (r *NADReconciler) needsNAD(ctx context.Context, ns namespaceInfo) (bool, string, error) {
	if d := mesh.NamespaceInMesh(ns.name, ns.labels, r.Mesh); d.InMesh {
		return true, d.Reason(), nil
	}
	var why string
	err := eachWorkload(ctx, r.Client, func(w workload) bool {
		if !w.deleting() && w.meshed(ns, r.Mesh) {
			why = fmt.Sprintf("%s %q is in the mesh", w.shortKind(), w.meta.Name)
			return false
		}
		return true
	}, client.InNamespace(ns.name))
	if err != nil || why != "" {
		return why != "", why, err
	}
	return false, fmt.Sprintf("namespace %q is not in the mesh and holds no meshed VM", ns.name), nil
}
