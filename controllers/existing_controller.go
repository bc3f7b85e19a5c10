package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

	"github.com/virtmesh/virtmesh/internal/injector"
	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/onboard"
	vmwebhook "github.com/virtmesh/virtmesh/webhook"
)

// Pins and onboarding change a running VMI's labels and annotations (KubeVirt
// lets them change) and create the migration of an onboarding; they read a
// migration back by its name.
// +kubebuilder:rbac:groups=kubevirt.io,resources=virtualmachineinstances,verbs=patch
// +kubebuilder:rbac:groups=kubevirt.io,resources=virtualmachineinstancemigrations,verbs=create;get

// Event reasons of pins and onboarding, on the VM (or the standalone VMI).
const (
	ReasonPinned              = "PinnedOutOfMesh"
	ReasonUnpinned            = "Unpinned"
	ReasonOnboardingStarted   = "OnboardingStarted"
	ReasonOnboarded           = "Onboarded"
	ReasonOnboardingFailed    = "OnboardingFailed"
	ReasonOnboardingAbandoned = "OnboardingAbandoned"
	ReasonOnboardedNoProxy    = "OnboardedWithoutProxy"
	ReasonCannotOnboard       = "CannotOnboard"
	ReasonOnboardingQueued    = "OnboardingQueued"
	ReasonExistingVMIsLabel   = "InvalidExistingVMIsLabel"
)

// onboardingPoll is how often a running onboarding migration is read (virtmesh
// may get, not watch, migrations); the VMI's own updates wake it sooner.
const onboardingPoll = 15 * time.Second

// onboardingTotal counts onboarding outcomes.
var onboardingTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "virtmesh_onboarding_total",
	Help: "Onboardings of VMIs that were running before their namespace joined the mesh, by result: started (a migration was " +
		"created), succeeded (virtmesh's migration of the VM ended in success in the last 10 minutes, as KubeVirt's status shows it, and " +
		"the VM is in a pod with an istio-proxy; once per migration and virtmesh process), noproxy (the same, but the pod has no " +
		"istio-proxy), failed (the migration failed or " +
		"was refused; retried after a backoff), abandoned (pinned out of the mesh again " +
		"after the last attempt, or when onboarding was no longer allowed).",
}, []string{"result"})

// ExistingReconciler keeps VMIs that were running before their namespace
// joined the mesh safe (a pin), and, where the onboard policy allows, brings
// them in by a live migration, a few at a time. Requests are VMIs.
type ExistingReconciler struct {
	Client    client.Client
	APIReader client.Reader
	Pods      client.Reader // launcher pods (LauncherPods)
	Recorder  record.EventRecorder
	Mesh      mesh.Config
	Policy    mesh.ExistingVMIs
	// Concurrency is how many onboarding migrations run at once in the
	// cluster; a namespace runs one at a time.
	Concurrency int
	States      *StateReconciler
	Now         func() time.Time

	// RetryDelay is the wait after a first failed attempt; it doubles.
	RetryDelay time.Duration

	mu sync.Mutex
	// started holds the onboardings this process started that the cache may
	// not show yet, and when, for counting the running ones.
	started map[types.NamespacedName]time.Time
	// waiting are VMIs that found no free slot: woken when one frees.
	waiting map[types.NamespacedName]bool
	wake    chan event.GenericEvent
	told    sync.Map // VMI (or namespace) → the last warning sent, so a retry does not repeat it
	// counted holds the onboarding migrations whose result this process
	// counted, with when KubeVirt ended them: an annotation written again
	// counts nothing more.
	counted map[types.UID]time.Time
	// created holds, for each VMI, the name of the last onboarding
	// migration this process created: not found later, it was deleted
	// (virtctl migrate-cancel deletes it), not cut short.
	created map[types.NamespacedName]string
}

// NewExistingReconciler builds the reconciler on the manager's clients.
func NewExistingReconciler(mgr ctrl.Manager, events *eventQueue, meshCfg mesh.Config, cfg Config, states *StateReconciler, pods *LauncherPods) *ExistingReconciler {
	return &ExistingReconciler{Client: client.WithFieldOwner(mgr.GetClient(), FieldOwner), APIReader: mgr.GetAPIReader(), Pods: pods,
		Recorder: events.recorder(mgr.GetEventRecorderFor("virtmesh-onboarding")), Mesh: meshCfg, Policy: cfg.ExistingVMIs,
		Concurrency: cfg.OnboardingConcurrency, RetryDelay: cfg.OnboardingRetryDelay, States: states, Now: time.Now,
		started: map[types.NamespacedName]time.Time{}, waiting: map[types.NamespacedName]bool{}, wake: make(chan event.GenericEvent, 256),
		created: map[types.NamespacedName]string{}}
}

// onboardingIndex indexes the VMIs whose onboarding migration runs (not
// waiting after a failure), to count them.
const onboardingIndex = "virtmesh.onboarding"

// onboardingRunning indexes a VMI as onboarding only when virtmesh would act
// on its annotation: it parses, names one of this VMI's onboarding
// migrations, waits for no retry, and the VMI still runs. An annotation
// anyone wrote otherwise takes no slot.
func onboardingRunning(o client.Object) []string {
	vmi, ok := o.(*kubevirtv1.VirtualMachineInstance)
	if !ok || vmi.DeletionTimestamp != nil || vmi.IsFinal() {
		return nil
	}
	v := vmi.Annotations[mesh.OnboardingAnnotation]
	if v == "" {
		return nil
	}
	if s, err := mesh.ParseOnboarding(v); err == nil && s.RetryAfter == nil && onboard.Ours(vmi, s.Migration) {
		return []string{"running"}
	}
	return nil
}

// SetupWithManager watches VMIs, their launcher pods and namespaces' labels.
func (r *ExistingReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager, pods *LauncherPods, workers int) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &kubevirtv1.VirtualMachineInstance{}, onboardingIndex, onboardingRunning); err != nil {
		return fmt.Errorf("indexing VMIs by onboarding: %w", err)
	}
	if err := registerCollector(onboardingTotal); err != nil {
		return err
	}
	// Every result has a series from the start (0), so rate() and alerts on
	// it work before the first onboarding.
	for _, result := range []string{"started", "succeeded", "noproxy", "failed", "abandoned"} {
		onboardingTotal.WithLabelValues(result)
	}
	changes := predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool { return stateChanged(e.ObjectOld, e.ObjectNew) }}
	changed := builder.WithPredicates(changes)
	return ctrl.NewControllerManagedBy(mgr).
		Named("existing-vmis").
		For(&kubevirtv1.VirtualMachineInstance{}, changed).
		WatchesRawSource(pods.Source(handler.EnqueueRequestsFromMapFunc(podToVMI), changes)).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.States.vmisIn), builder.OnlyMetadata,
			builder.WithPredicates(predicate.LabelChangedPredicate{})).
		WatchesRawSource(source.Channel(r.wake, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
}

// Reconcile pins, unpins, starts or follows the onboarding of one VMI.
func (r *ExistingReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	vmi := &kubevirtv1.VirtualMachineInstance{}
	if err := r.Client.Get(ctx, req.NamespacedName, vmi); apierrors.IsNotFound(err) {
		r.forget(req.NamespacedName)
		return reconcile.Result{}, nil
	} else if err != nil {
		return reconcile.Result{}, err
	}
	if vmi.DeletionTimestamp != nil || vmi.IsFinal() {
		r.forget(req.NamespacedName)
		return reconcile.Result{}, nil
	}
	ns, err := getNamespace(ctx, r.Client, vmi.Namespace)
	if err != nil || !ns.exists || ns.terminating {
		return reconcile.Result{}, err
	}
	policy, bad := mesh.ExistingPolicy(ns.labels, r.Policy)
	if bad != "" {
		r.warnOnce(ns.name, &corev1.ObjectReference{APIVersion: "v1", Kind: "Namespace", Name: ns.name}, ReasonExistingVMIsLabel,
			fmt.Sprintf("virtmesh: label %s=%q is not pin, onboard or ignore; virtmesh uses --existing-vmis=%s here", mesh.ExistingVMIsLabel, bad, r.Policy))
	}
	if v := vmi.Annotations[mesh.OnboardingAnnotation]; v != "" {
		return r.follow(ctx, vmi, ns, policy, v)
	}
	if onboard.PinnedByVirtmesh(vmi) && !r.inMeshUnpinned(vmi, ns) {
		return r.unpin(ctx, vmi)
	}
	st, err := r.States.stateOf(ctx, vmi)
	if err != nil {
		return reconcile.Result{}, err
	}
	d := mesh.Decide(vmi.Namespace, ns.labels, vmi.Labels, vmi.Annotations, r.Mesh)
	switch {
	case st.State == mesh.NeedsRestart && policy != mesh.ExistingIgnore && !d.Ambient && !onboard.OwnerChose(vmi):
		return r.pin(ctx, vmi)
	case st.State == mesh.Pinned && policy == mesh.ExistingOnboard && onboard.PinnedByVirtmesh(vmi) && !mesh.PinAbandoned(vmi.Annotations):
		return r.start(ctx, vmi, ns)
	}
	return reconcile.Result{}, nil
}

// inMeshUnpinned: without virtmesh's pin, the mesh rules would put vmi in the
// mesh, or virtmesh's configuration now excludes its namespace (virtmesh
// changes nothing there, and Istio may still inject: the pin stays).
func (r *ExistingReconciler) inMeshUnpinned(vmi *kubevirtv1.VirtualMachineInstance, ns namespaceInfo) bool {
	labels := make(map[string]string, len(vmi.Labels))
	for k, v := range vmi.Labels {
		if k != mesh.InjectKey {
			labels[k] = v
		}
	}
	d := mesh.Decide(vmi.Namespace, ns.labels, labels, vmi.Annotations, r.Mesh)
	return d.InMesh || d.Excluded()
}

func (r *ExistingReconciler) pin(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance) (reconcile.Result, error) {
	orig := vmi.DeepCopy()
	onboard.Pin(vmi, r.Now())
	if err := r.Client.Patch(ctx, vmi, metadataPatch(orig)); err != nil {
		return requeueOnConflict(fmt.Errorf("pinning VMI %s/%s: %w", vmi.Namespace, vmi.Name, err))
	}
	log.FromContext(ctx).Info("pinned a VMI that was running before its namespace joined the mesh")
	how := "restart it"
	if ok, _, _ := onboard.Migratable(vmi); ok {
		how = "restart it, or run kubectl virtmesh onboard " + vmiOwnerRefName(vmi) + " -n " + vmi.Namespace + " (a live migration; " +
			"or label the namespace " + mesh.ExistingVMIsLabel + "=onboard)"
	}
	r.Recorder.Eventf(stateEventRef(vmi), corev1.EventTypeNormal, ReasonPinned,
		"virtmesh labelled VMI %s %s=false: it was running before its namespace joined the mesh, and its next live migration "+
			"(a node drain, a KubeVirt upgrade) would have given its pod an istio-proxy KubeVirt does not serve, so the pod would never "+
			"become Ready. Its migrations now keep it outside the mesh. To bring it in: %s", vmi.Name, mesh.InjectKey, how)
	return reconcile.Result{}, nil
}

func (r *ExistingReconciler) unpin(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance) (reconcile.Result, error) {
	orig := vmi.DeepCopy()
	onboard.Unpin(vmi)
	if err := r.Client.Patch(ctx, vmi, metadataPatch(orig)); err != nil {
		return requeueOnConflict(fmt.Errorf("unpinning VMI %s/%s: %w", vmi.Namespace, vmi.Name, err))
	}
	log.FromContext(ctx).Info("removed virtmesh's pin: the namespace left the mesh")
	r.Recorder.Eventf(stateEventRef(vmi), corev1.EventTypeNormal, ReasonUnpinned,
		"virtmesh removed its label %s=false from VMI %s: the namespace is no longer in the mesh", mesh.InjectKey, vmi.Name)
	return reconcile.Result{}, nil
}

// start begins onboarding a pinned VMI when a slot is free: one update of
// its metadata (the webhook's mutation; the pin goes), then the migration.
func (r *ExistingReconciler) start(ctx context.Context, cached *kubevirtv1.VirtualMachineInstance, ns namespaceInfo) (reconcile.Result, error) {
	key := client.ObjectKeyFromObject(cached)
	if ok, restartOnly, why, err := r.canMigrateNow(ctx, cached); err != nil {
		return reconcile.Result{}, err
	} else if !ok {
		if restartOnly {
			r.warnOnce(key.String(), stateEventRef(cached), ReasonCannotOnboard, "virtmesh cannot onboard VMI "+cached.Name+": "+why)
			return reconcile.Result{}, nil
		}
		r.warnOnce(key.String(), stateEventRef(cached), ReasonCannotOnboard, "virtmesh cannot onboard VMI "+cached.Name+" now: "+why+
			"; it tries again when that changes")
		return reconcile.Result{RequeueAfter: onboardingPoll}, nil
	}
	free, err := r.reserve(ctx, cached)
	if err != nil || !free {
		return reconcile.Result{RequeueAfter: onboardingPoll}, err
	}
	vmi := &kubevirtv1.VirtualMachineInstance{}
	if err := r.APIReader.Get(ctx, key, vmi); err != nil {
		r.release(key)
		return requeueOnConflict(err)
	}
	// The cache may lag: a migration created since (a node drain's) renders
	// its target pod from the metadata as it is now. Ask the API server.
	if why, err := r.inFlight(ctx, vmi, r.APIReader); err != nil || why != "" {
		r.release(key)
		if why != "" {
			r.warnOnce(key.String(), stateEventRef(cached), ReasonCannotOnboard, "virtmesh cannot onboard VMI "+cached.Name+" now: "+why+
				"; it tries again when that changes")
		}
		return reconcile.Result{RequeueAfter: onboardingPoll}, err
	}
	var vm *kubevirtv1.VirtualMachine
	if name := vmiOwnerRefName(vmi); name != vmi.Name {
		vm = &kubevirtv1.VirtualMachine{}
		if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: vmi.Namespace, Name: name}, vm); err != nil {
			vm = nil // the app name then comes from the VMI alone, as the webhook does without its VM
		}
	}
	orig := vmi.DeepCopy()
	// Bridge is never onboarded (it cannot migrate), so the bridge policy
	// does not matter here: the defaults are the webhook's.
	env := vmwebhook.Env{Namespace: vmwebhook.Namespace{Name: ns.name, Labels: ns.labels}, VM: vm}
	if err := onboard.Prepare(vmi, env, r.Mesh, vmwebhook.DefaultConfig(), 1, mesh.OnboardedByController, r.Now()); err != nil {
		r.release(key)
		r.warnOnce(key.String(), stateEventRef(vmi), ReasonCannotOnboard, "virtmesh cannot onboard VMI "+vmi.Name+": "+err.Error())
		return reconcile.Result{}, nil
	}
	o, err := mesh.ParseOnboarding(vmi.Annotations[mesh.OnboardingAnnotation])
	if err != nil {
		r.release(key)
		return reconcile.Result{}, err // Prepare wrote it: cannot happen
	}
	if why, err := r.noInjector(ctx, ns.labels, vmi.Labels); err != nil || why != "" {
		r.release(key)
		if why != "" {
			r.warnOnce(key.String(), stateEventRef(vmi), ReasonCannotOnboard, "virtmesh cannot onboard VMI "+vmi.Name+" now: "+why+
				"; the VMI stays pinned, and virtmesh looks again every "+max(r.RetryDelay, onboardingPoll).String())
		}
		return reconcile.Result{RequeueAfter: max(r.RetryDelay, onboardingPoll)}, err
	}
	// Ask first, changing nothing: does KubeVirt accept the migration now
	// (its admission refuses one while another of the VMI is pending)?
	if err := r.Client.Create(ctx, onboard.Migration(vmi, o.Migration), client.DryRunAll); err != nil && !apierrors.IsAlreadyExists(err) {
		r.release(key)
		if !refused(err) {
			return reconcile.Result{}, fmt.Errorf("asking whether migration %s/%s would be accepted: %w", vmi.Namespace, o.Migration, err)
		}
		wait := max(r.RetryDelay, onboardingPoll)
		r.warnOnce(key.String(), stateEventRef(vmi), ReasonCannotOnboard, fmt.Sprintf("virtmesh cannot onboard VMI %s now: "+
			"the API server would refuse its live migration (%v); the VMI stays pinned, and virtmesh asks again every %s", vmi.Name, err, wait))
		return reconcile.Result{RequeueAfter: wait}, nil
	}
	if err := r.Client.Patch(ctx, vmi, metadataPatch(orig)); err != nil {
		r.release(key)
		return requeueOnConflict(fmt.Errorf("giving VMI %s/%s the mesh metadata: %w", vmi.Namespace, vmi.Name, err))
	}
	return r.migrate(ctx, vmi, o, mesh.ExistingOnboard)
}

// canMigrateNow is onboard.Migratable, and also false while a launcher pod
// other than the active one runs: the target of a migration KubeVirt has not
// recorded on the VMI yet, rendered from the VMI's metadata before the
// onboarding changed it.
func (r *ExistingReconciler) canMigrateNow(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance) (ok, restartOnly bool, why string, err error) {
	if ok, restartOnly, why = onboard.Migratable(vmi); !ok {
		return ok, restartOnly, why, nil
	}
	if why, err = r.inFlight(ctx, vmi, r.Pods); err != nil || why != "" {
		return false, false, why, err
	}
	return true, false, "", nil
}

// noInjector is injector.Missing on the injectors read from the API server.
func (r *ExistingReconciler) noInjector(ctx context.Context, nsLabels, labels map[string]string) (string, error) {
	mwcs := &admissionregistrationv1.MutatingWebhookConfigurationList{}
	if err := r.APIReader.List(ctx, mwcs, client.MatchingLabels{injector.WebhookLabel: injector.WebhookLabelValue}); err != nil {
		return "", fmt.Errorf("listing Istio's injectors: %w", err)
	}
	return injector.Missing(mwcs.Items, nsLabels, labels), nil
}

// inFlight says which live migration of vmi runs or is starting, if any:
// one KubeVirt recorded on the VMI, or a launcher pod other than the active
// one that has not finished (a target not handed off yet). Changing the
// inject metadata meanwhile would leave that target pod's proxy and
// KubeVirt's Istio networking disagreeing once the VM moves there. pods are
// read with reader: the cache, or the API server before an update.
func (r *ExistingReconciler) inFlight(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, reader client.Reader) (string, error) {
	if onboard.Migrating(vmi) {
		return "a live migration of it is running", nil
	}
	ptrs, err := launcherPodsOf(ctx, reader, vmi)
	if err != nil {
		return "", err
	}
	if p := onboard.TargetPodPending(vmi, ptrs); p != "" {
		return "a live migration of it is starting (target launcher pod " + p + ")", nil
	}
	return "", nil
}

// How a VM came to run in its active launcher pod (arrival).
const (
	// arrivalStarted: no migration moved it there (it started there, or
	// the last migration failed).
	arrivalStarted = iota
	// arrivalOurs: the onboarding's migration did, lately, and its result
	// is not counted yet.
	arrivalOurs
	// arrivalOther: a migration did, but KubeVirt does not show the
	// onboarding's doing it lately (a node drain's did), or it was
	// counted already.
	arrivalOther
	// arrivalUnsettled: a migration is handing the VM over, or KubeVirt
	// has yet to record the end of the onboarding's: look again.
	arrivalUnsettled
	// arrivalStuck: unsettled for longer than countWindow: virtmesh stops
	// waiting (and holding a slot) and ends the onboarding uncounted.
	arrivalStuck
)

// waitedTooLong: KubeVirt has shown the VMI's migration unfinished for
// longer than countWindow (since its end, its start, or the attempt's).
func (r *ExistingReconciler) waitedTooLong(ms *kubevirtv1.VirtualMachineInstanceMigrationState, o mesh.OnboardingStatus) bool {
	since := o.Started.Time
	switch {
	case ms.EndTimestamp != nil:
		since = ms.EndTimestamp.Time
	case ms.StartTimestamp != nil:
		since = ms.StartTimestamp.Time
	}
	return r.Now().Sub(since) > countWindow
}

// countWindow is how long after virtmesh's migration ended its onboarding's
// result is counted.
const countWindow = 10 * time.Minute

// arrival tells how vmi came to run in its active launcher pod, from what
// only KubeVirt writes: the VMI's migration state and the migration's
// status. The onboarding's migration counts (arrivalOurs, with the
// migration) when it is virtmesh's, for this VMI, ended in success within
// countWindow, and was not counted before. The annotation, which whoever may
// edit the VMI may write, only names which migration to look at.
func (r *ExistingReconciler) arrival(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance,
	o mesh.OnboardingStatus) (int, *kubevirtv1.VirtualMachineInstanceMigration, error) {
	ms := vmi.Status.MigrationState
	if ms != nil && ms.MigrationUID != "" && !ms.Completed && !ms.Failed {
		if r.waitedTooLong(ms, o) {
			return arrivalStuck, nil, nil
		}
		return arrivalUnsettled, nil, nil // KubeVirt hands the VM over now
	}
	m := &kubevirtv1.VirtualMachineInstanceMigration{}
	switch err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: vmi.Namespace, Name: o.Migration}, m); {
	case apierrors.IsNotFound(err):
		m = nil
	case err != nil:
		return 0, nil, err
	case m.Labels[onboard.MigrationLabel] != string(vmi.UID) || m.Spec.VMIName != vmi.Name:
		m = nil // not virtmesh's
	case m.Status.Phase == kubevirtv1.MigrationSucceeded:
		if end, ok := migrationEnded(m); ok && r.Now().Sub(end) < countWindow && !r.wasCounted(m.UID) {
			return arrivalOurs, m, nil
		}
	case !m.IsFinal() && ms != nil && ms.MigrationUID == m.UID:
		// The VMI shows it done; the migration's phase follows (KubeVirt
		// holds it back while a hotplug after the move is pending).
		if r.waitedTooLong(ms, o) {
			return arrivalStuck, nil, nil
		}
		return arrivalUnsettled, nil, nil
	}
	ptrs, err := launcherPodsOf(ctx, r.Pods, vmi)
	if err != nil {
		return 0, nil, err
	}
	if pod := mesh.ActivePod(vmi, ptrs); pod != nil && ms != nil && ms.Completed && !ms.Failed && ms.TargetPod == pod.Name {
		return arrivalOther, nil, nil
	}
	if m != nil && m.Status.Phase == kubevirtv1.MigrationSucceeded {
		return arrivalOther, nil, nil // it did, and a later migration moved the VM again
	}
	return arrivalStarted, nil, nil
}

// migrationEnded is when KubeVirt recorded m's end.
func migrationEnded(m *kubevirtv1.VirtualMachineInstanceMigration) (time.Time, bool) {
	if s := m.Status.MigrationState; s != nil && s.EndTimestamp != nil {
		return s.EndTimestamp.Time, true
	}
	for _, t := range m.Status.PhaseTransitionTimestamps {
		if t.Phase == m.Status.Phase {
			return t.PhaseTransitionTimestamp.Time, true
		}
	}
	return time.Time{}, false
}

func (r *ExistingReconciler) wasCounted(uid types.UID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.counted[uid]
	return ok
}

// markCounted records that the result of m's onboarding was counted,
// forgetting those past countWindow.
func (r *ExistingReconciler) markCounted(m *kubevirtv1.VirtualMachineInstanceMigration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.Now()
	// Kept as long as arrival would count it: by KubeVirt's end time.
	for uid, end := range r.counted {
		if now.Sub(end) >= countWindow {
			delete(r.counted, uid)
		}
	}
	if r.counted == nil {
		r.counted = map[types.UID]time.Time{}
	}
	end, ok := migrationEnded(m)
	if !ok {
		end = now
	}
	r.counted[m.UID] = end // even ahead of virtmesh's clock: arrival counts it until then
}

// migrate creates the migration of an onboarding attempt, named as the VMI's
// annotation records (again after a restart, so never a second one).
func (r *ExistingReconciler) migrate(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, o mesh.OnboardingStatus,
	policy mesh.ExistingVMIs) (reconcile.Result, error) {
	m := onboard.Migration(vmi, o.Migration)
	attempt := o.Attempt
	switch err := r.Client.Create(ctx, m); {
	case apierrors.IsAlreadyExists(err):
		r.createdHere(client.ObjectKeyFromObject(vmi), m.Name)
		return reconcile.Result{RequeueAfter: onboardingPoll}, nil
	case refused(err):
		// KubeVirt's admission (another migration runs, the VMI cannot
		// migrate now, a quota) or RBAC said no: a failed attempt, not a
		// retry every few seconds.
		return r.attemptFailed(ctx, vmi, o, policy, "the API server refused to create it: "+err.Error())
	case err != nil:
		r.release(client.ObjectKeyFromObject(vmi))
		return reconcile.Result{}, fmt.Errorf("creating migration %s/%s: %w", m.Namespace, m.Name, err)
	}
	r.createdHere(client.ObjectKeyFromObject(vmi), m.Name)
	onboardingTotal.WithLabelValues("started").Inc()
	log.FromContext(ctx).Info("onboarding by live migration", "migration", m.Name, "attempt", attempt)
	r.Recorder.Eventf(stateEventRef(vmi), corev1.EventTypeNormal, ReasonOnboardingStarted,
		"virtmesh gave VMI %s the mesh labels and annotations and started live migration %s (attempt %d of %d): its new pod "+
			"gets an istio-proxy that KubeVirt serves. The VM pauses briefly; open TCP connections drop.",
		vmi.Name, m.Name, attempt, mesh.MaxOnboardingAttempts)
	return reconcile.Result{RequeueAfter: onboardingPoll}, nil
}

// follow reads the migration of the running onboarding and acts on its end.
func (r *ExistingReconciler) follow(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, ns namespaceInfo,
	policy mesh.ExistingVMIs, raw string) (reconcile.Result, error) {
	key := client.ObjectKeyFromObject(vmi)
	o, err := mesh.ParseOnboarding(raw)
	if err != nil {
		// Not virtmesh's: never acted on (the state says so).
		r.warnOnce(key.String(), stateEventRef(vmi), ReasonCannotOnboard, "virtmesh: VMI "+vmi.Name+": "+err.Error())
		return reconcile.Result{}, nil
	}
	name := o.Migration
	if !onboard.Ours(vmi, name) {
		r.warnOnce(key.String(), stateEventRef(vmi), ReasonCannotOnboard, fmt.Sprintf("virtmesh: VMI %s: annotation %s names migration %q, "+
			"which virtmesh would not have created for this VMI; virtmesh leaves it alone", vmi.Name, mesh.OnboardingAnnotation, name))
		return reconcile.Result{}, nil
	}
	// In the mesh already, by this attempt's migration or any other since
	// the VMI got the mesh metadata (a node drain's): done. The state says
	// Meshed or Starting only for a pod created with that metadata.
	st, err := r.States.stateOf(ctx, vmi)
	if err != nil {
		return reconcile.Result{}, err
	}
	if st.State == mesh.Meshed || st.State == mesh.Starting || st.State == mesh.NoProxy {
		// Counted as an onboarding's result only on what KubeVirt says,
		// never on the annotation (anyone who may edit the VMI may write
		// it): see arrival.
		by, m, err := r.arrival(ctx, vmi, o)
		if err != nil {
			return reconcile.Result{}, err
		}
		switch {
		case by == arrivalUnsettled:
			return reconcile.Result{RequeueAfter: onboardingProxyGrace / 6}, nil
		case by == arrivalStuck:
			return r.end(ctx, vmi, corev1.EventTypeWarning, ReasonCannotOnboard, fmt.Sprintf("virtmesh: VMI %s: KubeVirt has shown a "+
				"live migration of it unfinished for more than %s (its migration state, or the phase of migration %s); virtmesh "+
				"ended the onboarding without counting it. Its state is %s: %s", vmi.Name, countWindow, name, st.State, st.Reason))
		case by == arrivalStarted && st.State == mesh.NoProxy:
			return r.end(ctx, vmi, corev1.EventTypeWarning, ReasonCannotOnboard, fmt.Sprintf("virtmesh: VMI %s: annotation %s "+
				"records an onboarding, but no live migration moved the VM into the launcher pod it runs in, which was created with "+
				"the mesh metadata and has no istio-proxy: virtmesh removed the annotation and counts no onboarding. Next: %s",
				vmi.Name, mesh.OnboardingAnnotation, st.NextStep))
		case by == arrivalStarted:
			// No migration moved it into its pod, created with the mesh
			// metadata: the annotation came after (not virtmesh's, or
			// copied from another VMI).
			return r.end(ctx, vmi, corev1.EventTypeWarning, ReasonCannotOnboard, fmt.Sprintf("virtmesh: VMI %s: annotation %s "+
				"records an onboarding, but no live migration moved the VM into the launcher pod it runs in, which was "+
				"created with the mesh metadata (%s): it was in the mesh already. virtmesh removed the annotation and counts no onboarding",
				vmi.Name, mesh.OnboardingAnnotation, st.State))
		case st.State == mesh.NoProxy:
			// The VM moved into a pod created with the mesh metadata, and
			// no injector gave it a proxy: another migration cannot help.
			return r.finishNoProxy(ctx, vmi, st, m)
		case by == arrivalOther:
			return r.end(ctx, vmi, corev1.EventTypeNormal, ReasonOnboarded, fmt.Sprintf("virtmesh: VMI %s is in the mesh: a live "+
				"migration moved it into a launcher pod created with the mesh metadata. virtmesh ended its onboarding without counting "+
				"it: KubeVirt does not show virtmesh's migration %s ending in success within the last %s, or virtmesh counted it "+
				"already (another migration, a node drain's say, may have moved it) (kubectl virtmesh status shows its state)",
				vmi.Name, name, countWindow))
		}
		return r.finish(ctx, vmi, m, "its live migration "+name+" moved it into a launcher pod with an istio-proxy KubeVirt serves")
	}
	now := r.Now()
	if o.RetryAfter != nil {
		if wait := o.RetryAfter.Sub(now); wait > 0 {
			return reconcile.Result{RequeueAfter: wait}, nil
		}
		switch {
		case policy != mesh.ExistingOnboard:
			return r.abandon(ctx, vmi, o, "onboarding is not allowed here (policy "+string(policy)+")")
		case o.Attempt >= mesh.MaxOnboardingAttempts:
			return r.abandon(ctx, vmi, o, fmt.Sprintf("%d attempts failed", o.Attempt))
		}
		if res, done, err := r.readyOrWait(ctx, vmi, ns, o); done {
			return res, err
		}
		if free, err := r.reserve(ctx, vmi); err != nil || !free {
			return reconcile.Result{RequeueAfter: onboardingPoll}, err
		}
		next := onboard.Attempt(vmi, o.Attempt+1, o.By, now)
		next.MeshedAt = &metav1.Time{Time: o.MeshedSince()}
		if err := r.setOnboarding(ctx, vmi, next); err != nil {
			r.release(key)
			return requeueOnConflict(err)
		}
		return r.migrate(ctx, vmi, next, policy)
	}

	m := &kubevirtv1.VirtualMachineInstanceMigration{}
	switch err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: vmi.Namespace, Name: name}, m); {
	case apierrors.IsNotFound(err):
		// Someone deleted it (virtctl migrate-cancel does), or its
		// creation was cut short (a restart between the update and the
		// create, a create that failed) or refused. One this process
		// created and no longer finds was deleted: a failed attempt, so an
		// admin who cancels it during a drain is not overruled every few
		// seconds. Any other is created (once: then this process knows it).
		cancelled := r.createdBy(key) == name
		switch {
		case o.By == mesh.OnboardedByCLI && onboard.StartedRecently(o, now) && !cancelled:
			return reconcile.Result{RequeueAfter: onboardingPoll}, nil // kubectl virtmesh creates it right after the update
		case policy == mesh.ExistingOnboard && cancelled:
			return r.attemptFailed(ctx, vmi, o, policy, "it was deleted before it ended (virtctl migrate-cancel deletes it). "+
				"To stop virtmesh onboarding VMs in namespace "+vmi.Namespace+", label it "+mesh.ExistingVMIsLabel+"="+string(mesh.ExistingPin))
		case policy == mesh.ExistingOnboard:
			if res, done, err := r.readyOrWait(ctx, vmi, ns, o); done {
				return res, err
			}
			if free, err := r.reserve(ctx, vmi); err != nil || !free {
				return reconcile.Result{RequeueAfter: onboardingPoll}, err
			}
			return r.migrate(ctx, vmi, o, policy)
		}
		return r.abandon(ctx, vmi, o, "its migration "+name+" does not exist and onboarding is not allowed here (policy "+string(policy)+")")
	case err != nil:
		return reconcile.Result{}, err
	case m.Labels[onboard.MigrationLabel] != string(vmi.UID) || m.Spec.VMIName != vmi.Name:
		return r.abandon(ctx, vmi, o, "migration "+name+" is not virtmesh's")
	}
	switch m.Status.Phase {
	case kubevirtv1.MigrationSucceeded:
		// The pod cache may not show the new pod yet: give it a moment.
		if ended := migrationEnd(m, o); now.Sub(ended) < onboardingProxyGrace {
			return reconcile.Result{RequeueAfter: onboardingProxyGrace / 6}, nil
		}
		// Still not Meshed, Starting or NoProxy: the VM runs in a pod
		// created before the VMI got the mesh metadata (the target of a
		// migration that started first). A new attempt renders a new pod.
		return r.attemptFailed(ctx, vmi, o, policy, "it succeeded, but the VM runs in a launcher pod created before the VMI got "+
			"the mesh metadata ("+st.Reason+")")
	case kubevirtv1.MigrationFailed:
		return r.attemptFailed(ctx, vmi, o, policy, migrationFailure(m))
	}
	r.keep(key)
	return reconcile.Result{RequeueAfter: onboardingPoll}, nil
}

// onboardingProxyGrace is how long after its migration succeeded virtmesh
// waits to see the new launcher pod's proxy before it says there is none.
const onboardingProxyGrace = 30 * time.Second

// migrationEnd is when m ended, as KubeVirt recorded it (else when the
// attempt started).
func migrationEnd(m *kubevirtv1.VirtualMachineInstanceMigration, o mesh.OnboardingStatus) time.Time {
	if end, ok := migrationEnded(m); ok {
		return end
	}
	return o.Started.Time
}

// readyOrWait ends the reconcile (done) when a migration of vmi cannot
// bring it into the mesh now: abandoning when it no longer joins by one
// (onboard.Joins) or only a restart can bring it in, waiting without a slot
// for a passing reason (a migration runs, the VM is paused).
func (r *ExistingReconciler) readyOrWait(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, ns namespaceInfo,
	o mesh.OnboardingStatus) (res reconcile.Result, done bool, err error) {
	if ok, why := onboard.Joins(vmi, ns.labels, r.Mesh); !ok {
		res, err := r.abandon(ctx, vmi, o, why)
		return res, true, err
	}
	ok, restartOnly, why, err := r.canMigrateNow(ctx, vmi)
	switch {
	case err != nil:
		return reconcile.Result{}, true, err
	case restartOnly:
		res, err := r.abandon(ctx, vmi, o, why)
		return res, true, err
	case ok:
		// Passing reasons too, each a wait that uses no attempt: no
		// injector yet, or KubeVirt would refuse the migration now (one
		// it queued during a drain is on neither the VMI nor a pod).
		if why, err = r.noInjector(ctx, ns.labels, vmi.Labels); err != nil {
			return reconcile.Result{}, true, err
		}
		if why == "" {
			m := onboard.Migration(vmi, onboard.MigrationName(vmi, o.Attempt+1, r.Now()))
			if err := r.Client.Create(ctx, m, client.DryRunAll); err != nil && !apierrors.IsAlreadyExists(err) {
				if !refused(err) {
					return reconcile.Result{}, true, err
				}
				why = "the API server would refuse its live migration (" + err.Error() + ")"
			}
		}
		if why == "" {
			return reconcile.Result{}, false, nil
		}
		r.warnOnce(client.ObjectKeyFromObject(vmi).String(), stateEventRef(vmi), ReasonCannotOnboard,
			"virtmesh cannot continue onboarding VMI "+vmi.Name+" now: "+why+"; it looks again later, without using an attempt")
	}
	r.release(client.ObjectKeyFromObject(vmi))
	log.FromContext(ctx).V(1).Info("onboarding waits", "why", why)
	return reconcile.Result{RequeueAfter: max(r.RetryDelay, onboardingPoll)}, true, nil
}

// finish ends an onboarding whose migration m (arrivalOurs) brought vmi
// into the mesh, and counts it.
func (r *ExistingReconciler) finish(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, m *kubevirtv1.VirtualMachineInstanceMigration,
	how string) (reconcile.Result, error) {
	return r.endCounting(ctx, vmi, "succeeded", m, corev1.EventTypeNormal, ReasonOnboarded,
		fmt.Sprintf("virtmesh: VMI %s is in the mesh: %s (kubectl virtmesh status shows its state)", vmi.Name, how))
}

// finishNoProxy ends an onboarding whose migration moved the VM into a pod
// created with the mesh metadata but without a proxy, and says so with the
// state's reason and next step. It is counted when m, the onboarding's
// migration, did it (arrivalOurs); nil: another migration did.
func (r *ExistingReconciler) finishNoProxy(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, st mesh.Status,
	m *kubevirtv1.VirtualMachineInstanceMigration) (reconcile.Result, error) {
	return r.endCounting(ctx, vmi, "noproxy", m, corev1.EventTypeWarning, ReasonOnboardedNoProxy,
		fmt.Sprintf("virtmesh: a live migration moved VMI %s into a new launcher pod, but that pod has no istio-proxy: %s. KubeVirt keeps "+
			"inbound connections for the proxy, so the VM is not reachable through the mesh. Next: %s", vmi.Name, st.Reason, st.NextStep))
}

// end removes the onboarding's annotations from vmi and sends the Event,
// counting no result.
func (r *ExistingReconciler) end(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, typ, reason, msg string) (reconcile.Result, error) {
	return r.endCounting(ctx, vmi, "", nil, typ, reason, msg)
}

// endCounting is end, and counts result when m, the onboarding's migration
// (arrivalOurs), brought it about: m is then remembered as counted.
func (r *ExistingReconciler) endCounting(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, result string,
	m *kubevirtv1.VirtualMachineInstanceMigration, typ, reason, msg string) (reconcile.Result, error) {
	r.release(client.ObjectKeyFromObject(vmi))
	orig := vmi.DeepCopy()
	onboard.Finish(vmi)
	if err := r.Client.Patch(ctx, vmi, metadataPatch(orig)); err != nil {
		return requeueOnConflict(fmt.Errorf("ending the onboarding of VMI %s/%s: %w", vmi.Namespace, vmi.Name, err))
	}
	if m != nil {
		r.markCounted(m)
		onboardingTotal.WithLabelValues(result).Inc()
	}
	r.Recorder.Event(stateEventRef(vmi), typ, reason, msg)
	return reconcile.Result{}, nil
}

// attemptFailed records a failed onboarding attempt: the next one after a
// backoff, or, after the last or when onboarding is no longer allowed, the
// pin again.
func (r *ExistingReconciler) attemptFailed(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, o mesh.OnboardingStatus,
	policy mesh.ExistingVMIs, why string) (reconcile.Result, error) {
	r.release(client.ObjectKeyFromObject(vmi))
	if o.Attempt >= mesh.MaxOnboardingAttempts || policy != mesh.ExistingOnboard {
		if res, waits, err := r.abandonLater(ctx, vmi); waits || err != nil {
			return res, err // counted once, when it is abandoned
		}
		res, err := r.abandon(ctx, vmi, o, "live migration "+o.Migration+" failed: "+why)
		if err == nil {
			onboardingTotal.WithLabelValues("failed").Inc()
		}
		return res, err
	}
	now := r.Now()
	o.RetryAfter = &metav1.Time{Time: now.Add(onboard.Backoff(r.RetryDelay, o.Attempt)).UTC().Truncate(time.Second)}
	o.LastFailure = why
	if err := r.setOnboarding(ctx, vmi, o); err != nil {
		return requeueOnConflict(err)
	}
	onboardingTotal.WithLabelValues("failed").Inc()
	r.Recorder.Eventf(stateEventRef(vmi), corev1.EventTypeWarning, ReasonOnboardingFailed,
		"virtmesh: live migration %s of VMI %s failed: %s. The VMI keeps the mesh labels and annotations meanwhile, so a "+
			"migration of it (a node drain) also brings it in; virtmesh tries again after %s (attempt %d of %d next)", o.Migration, vmi.Name, why,
		o.RetryAfter.Format(time.RFC3339), o.Attempt+1, mesh.MaxOnboardingAttempts)
	return reconcile.Result{RequeueAfter: o.RetryAfter.Sub(now)}, nil
}

// abandonLater says whether vmi must stay as it is for now (waits): a live
// migration of it runs or is starting, with a target pod rendered from the
// mesh metadata. Pinning it now would have KubeVirt leave that pod's proxy
// unserved once the VM moves there (the hazard pins exist to prevent).
func (r *ExistingReconciler) abandonLater(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance) (reconcile.Result, bool, error) {
	fresh := &kubevirtv1.VirtualMachineInstance{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(vmi), fresh); err != nil {
		return reconcile.Result{}, false, err
	}
	why, err := r.inFlight(ctx, fresh, r.APIReader)
	if err != nil || why == "" {
		return reconcile.Result{}, false, err
	}
	log.FromContext(ctx).Info("onboarding ends once the running migration does", "why", why)
	return reconcile.Result{RequeueAfter: onboardingPoll}, true, nil
}

// abandon pins vmi out of the mesh again and says why, once no migration of
// it runs.
func (r *ExistingReconciler) abandon(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, o mesh.OnboardingStatus, why string) (reconcile.Result, error) {
	r.release(client.ObjectKeyFromObject(vmi))
	if res, waits, err := r.abandonLater(ctx, vmi); waits || err != nil {
		return res, err
	}
	// A pin hides the one case it cannot make consistent: the VM already
	// runs in a pod whose networking KubeVirt set up for a proxy it lacks.
	// Its state then says Pinned; the Warning says what to do.
	var moved string
	if st, err := r.States.stateOf(ctx, vmi); err == nil && st.State == mesh.Broken {
		moved = brokenBeforePin(vmi, st.Reason)
	}
	orig := vmi.DeepCopy()
	onboard.Repin(vmi, r.Now())
	if err := r.Client.Patch(ctx, vmi, metadataPatch(orig)); err != nil {
		return requeueOnConflict(fmt.Errorf("pinning VMI %s/%s again: %w", vmi.Namespace, vmi.Name, err))
	}
	onboardingTotal.WithLabelValues("abandoned").Inc()
	log.FromContext(ctx).Info("onboarding abandoned; pinned again", "why", why, "attempt", o.Attempt)
	r.Recorder.Eventf(stateEventRef(vmi), corev1.EventTypeWarning, ReasonOnboardingAbandoned,
		"virtmesh stopped onboarding VMI %s: %s. It is pinned out of the mesh again (%s=false), so its migrations stay consistent; "+
			"restart it to bring it in, or try again with kubectl virtmesh onboard %s -n %s.%s", vmi.Name, why, mesh.InjectKey,
		vmiOwnerRefName(vmi), vmi.Namespace, moved)
	return reconcile.Result{}, nil
}

// brokenBeforePin is what a re-pin's Warning adds when the VM was Broken:
// how to move it into a pod created pinned.
func brokenBeforePin(vmi *kubevirtv1.VirtualMachineInstance, reason string) string {
	how := fmt.Sprintf("Live-migrate it once more (virtctl migrate %s -n %s)", vmiOwnerRefName(vmi), vmi.Namespace)
	if _, restartOnly, _ := onboard.Migratable(vmi); restartOnly {
		how = "It cannot live-migrate any more: " + mesh.RestartAdvice(vmi) + " in namespace " + vmi.Namespace
	}
	return fmt.Sprintf(" Before the pin it was Broken: %s. %s: its new pod, created pinned, gets KubeVirt's networking without Istio", reason, how)
}

func (r *ExistingReconciler) setOnboarding(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, o mesh.OnboardingStatus) error {
	orig := vmi.DeepCopy()
	if vmi.Annotations == nil {
		vmi.Annotations = map[string]string{}
	}
	vmi.Annotations[mesh.OnboardingAnnotation] = o.Encode()
	if err := r.Client.Patch(ctx, vmi, metadataPatch(orig)); err != nil {
		return fmt.Errorf("recording the onboarding of VMI %s/%s: %w", vmi.Namespace, vmi.Name, err)
	}
	return nil
}

// refused: the API server, an admission webhook or RBAC said no to a
// request, rather than failing to answer.
func refused(err error) bool {
	return apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)
}

// migrationFailure says why a migration failed, as KubeVirt recorded it.
func migrationFailure(m *kubevirtv1.VirtualMachineInstanceMigration) string {
	if s := m.Status.MigrationState; s != nil && s.FailureReason != "" {
		return s.FailureReason
	}
	for _, c := range m.Status.Conditions {
		if c.Status == corev1.ConditionTrue && c.Message != "" {
			return c.Message
		}
	}
	return "KubeVirt gave no reason; kubectl describe vmim -n " + m.Namespace + " " + m.Name
}

// reserve takes an onboarding slot for key: one per namespace, and at most
// Concurrency namespaces at once. Running onboardings are read from the
// cache (VMIs carrying a running onboarding annotation, in namespaces whose
// policy is onboard) and from those this process started since. Anyone who
// may annotate VMIs can make them look onboarding; counting namespaces, not
// VMIs, keeps that from taking more than their own namespace's slot.
func (r *ExistingReconciler) reserve(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance) (bool, error) {
	key := client.ObjectKeyFromObject(vmi)
	running := &kubevirtv1.VirtualMachineInstanceList{}
	if err := r.Client.List(ctx, running, client.MatchingFields{onboardingIndex: "running"}, client.UnsafeDisableDeepCopy); err != nil {
		return false, err
	}
	onboarding := map[string]bool{key.Namespace: true}
	byNamespace := map[string][]*kubevirtv1.VirtualMachineInstance{}
	now := r.Now()
	for i := range running.Items {
		if !holdsSlot(&running.Items[i], now) {
			continue
		}
		ns := running.Items[i].Namespace
		if _, seen := onboarding[ns]; !seen {
			info, err := getNamespace(ctx, r.Client, ns)
			if err != nil {
				return false, err
			}
			p, _ := mesh.ExistingPolicy(info.labels, r.Policy)
			// A terminating namespace's VMs are being deleted, and virtmesh
			// does nothing there: its onboardings hold no slot.
			onboarding[ns] = p == mesh.ExistingOnboard && info.exists && !info.terminating
		}
		if onboarding[ns] {
			byNamespace[ns] = append(byNamespace[ns], &running.Items[i])
		}
	}
	// What the VMIs say is checked against their migrations: anyone who
	// may update a VMI can write its annotations and its status. A few
	// per namespace, in name order: more only cost reads, and could only
	// keep their own namespace's slot.
	var keys []types.NamespacedName
	for _, vmis := range byNamespace {
		slices.SortFunc(vmis, func(a, b *kubevirtv1.VirtualMachineInstance) int { return strings.Compare(a.Name, b.Name) })
		for _, v := range vmis[:min(len(vmis), verifiedPerNamespace)] {
			runs, err := r.migrationRuns(ctx, v)
			if err != nil {
				return false, err
			}
			if runs {
				keys = append(keys, client.ObjectKeyFromObject(v))
				break
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	holder := map[string]types.NamespacedName{} // the VMI holding each namespace's slot
	for k, at := range r.started {
		if now.Sub(at) > 2*time.Minute {
			delete(r.started, k) // the cache shows it by now if it still runs
			continue
		}
		holder[k.Namespace] = k
	}
	if h, ok := holder[key.Namespace]; ok {
		return r.wait(key, h == key), nil
	}
	for _, k := range keys {
		if h, ok := holder[k.Namespace]; !ok || k.Name < h.Name {
			holder[k.Namespace] = k
		}
	}
	if h, ok := holder[key.Namespace]; ok {
		return r.wait(key, h == key), nil
	}
	if len(holder) >= r.Concurrency {
		holders := make([]string, 0, len(holder))
		for _, h := range holder {
			holders = append(holders, h.String())
		}
		slices.Sort(holders)
		if _, told := r.told.LoadOrStore("queued/"+key.String(), true); told {
			return r.wait(key, false), nil // once per wait, whoever holds the slots
		}
		r.Recorder.Event(stateEventRef(vmi), corev1.EventTypeNormal, ReasonOnboardingQueued, fmt.Sprintf("virtmesh onboards VMI %s once an onboarding "+
			"slot frees: --onboarding-concurrency=%d, held by %s", key.Name, r.Concurrency, strings.Join(holders, ", ")))
		return r.wait(key, false), nil
	}
	r.started[key] = now
	return r.wait(key, true), nil
}

// verifiedPerNamespace is how many of a namespace's onboardings reserve
// checks against their migrations.
const verifiedPerNamespace = 3

// migrationRuns reports whether the migration vmi's onboarding names exists
// (read from the API server), is virtmesh's for this VMI, and has not
// ended; and, if the VMI's status shows a migration handed off, that it is
// this one. Only such an onboarding holds a slot: a migration is created
// only for a running VM that can migrate, and KubeVirt ends every migration.
func (r *ExistingReconciler) migrationRuns(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance) (bool, error) {
	o, err := mesh.ParseOnboarding(vmi.Annotations[mesh.OnboardingAnnotation])
	if err != nil || !onboard.Ours(vmi, o.Migration) {
		return false, nil
	}
	m := &kubevirtv1.VirtualMachineInstanceMigration{}
	switch err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: vmi.Namespace, Name: o.Migration}, m); {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, err
	}
	if s := vmi.Status.MigrationState; s != nil && s.MigrationUID != "" && s.MigrationUID != m.UID && onboard.Migrating(vmi) {
		return false, nil
	}
	return m.Labels[onboard.MigrationLabel] == string(vmi.UID) && !m.IsFinal(), nil
}

// holdsSlot reports whether an indexed (running) onboarding of vmi may hold
// a slot now: not while the VM is paused (it cannot migrate; it waits
// without one), nor with a start in the future. reserve then checks it
// against its migration: KubeVirt may queue a migration for as long as a
// drain lasts (beyond ParallelMigrationsPerCluster), and it holds its slot
// all that time, after a failover too.
func holdsSlot(vmi *kubevirtv1.VirtualMachineInstance, now time.Time) bool {
	if onboard.Migrating(vmi) {
		return true // even paused: KubeVirt pauses a migration's source that does not converge
	}
	for _, c := range vmi.Status.Conditions {
		if c.Type == kubevirtv1.VirtualMachineInstancePaused && c.Status == corev1.ConditionTrue {
			return false
		}
	}
	o, err := mesh.ParseOnboarding(vmi.Annotations[mesh.OnboardingAnnotation])
	return err == nil && o.Started.Time.Before(now.Add(onboard.CLIGrace))
}

// wait records whether key waits for a slot (to be woken when one frees),
// and returns got.
func (r *ExistingReconciler) wait(key types.NamespacedName, got bool) bool {
	if got {
		delete(r.waiting, key)
	} else {
		r.waiting[key] = true
	}
	return got
}

// createdHere records that this process created (or found) migration name
// for key's onboarding.
func (r *ExistingReconciler) createdHere(key types.NamespacedName, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.created[key] = name
}

// createdBy is the name of the last onboarding migration this process
// created for key, if any.
func (r *ExistingReconciler) createdBy(key types.NamespacedName) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.created[key]
}

// keep refreshes a running onboarding's slot.
func (r *ExistingReconciler) keep(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started[key] = r.Now()
}

// release frees key's slot and wakes the VMIs waiting for one.
func (r *ExistingReconciler) release(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.started, key)
	delete(r.waiting, key)
	r.told.Delete("queued/" + key.String())
	for k := range r.waiting {
		vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}}
		select {
		case r.wake <- event.GenericEvent{Object: vmi}:
			delete(r.waiting, k)
		default: // full: the poll finds it
		}
	}
}

func (r *ExistingReconciler) forget(key types.NamespacedName) {
	r.release(key)
	r.mu.Lock()
	delete(r.created, key)
	r.mu.Unlock()
	r.told.Delete(key.String())
}

// warnOnce sends a Warning once per subject and message.
func (r *ExistingReconciler) warnOnce(subject string, ref *corev1.ObjectReference, reason, msg string) {
	r.eventOnce(subject, ref, corev1.EventTypeWarning, reason, msg)
}

// eventOnce sends an Event once per subject and message.
func (r *ExistingReconciler) eventOnce(subject string, ref *corev1.ObjectReference, typ, reason, msg string) {
	if prev, ok := r.told.Load(subject); ok && prev == reason+msg {
		return
	}
	r.told.Store(subject, reason+msg)
	r.Recorder.Event(ref, typ, reason, msg)
}

// vmiOwnerRefName is the VM that controls vmi, or the VMI's own name.
func vmiOwnerRefName(vmi *kubevirtv1.VirtualMachineInstance) string {
	for _, o := range vmi.OwnerReferences {
		if o.Kind == "VirtualMachine" && o.Controller != nil && *o.Controller {
			return o.Name
		}
	}
	return vmi.Name
}
