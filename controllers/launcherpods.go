package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// LauncherPods is virtmesh's cache of KubeVirt's launcher pods (label
// kubevirt.io=virt-launcher), for the mesh state, onboarding and NAD
// clean-up. It holds each pod as a launcherPod: what trimPod keeps, in a
// flat struct of a few hundred bytes, where the manager's cache would hold a
// corev1.Pod (1.1 KB of struct before any field, plus its maps): at 20,000
// VMIs that is most of the difference between meeting the memory goal and
// not (docs/benchmarks.md). Readers get corev1.Pods again, exactly as
// trimPod leaves them, built on each read.
//
// It is a manager.Runnable of the leader only, as the pod watches of the
// controllers were. Reads wait until its first list is in; Source feeds
// controllers. Nothing in virtmesh reads pods through the manager's cache
// (CacheByObject still narrows that cache to trimmed launcher pods, in case
// something ever does).
type LauncherPods struct {
	informer toolscache.SharedIndexInformer
}

// NewLauncherPods builds the cache on cfg (its own clientset, speaking
// protobuf: a launcher pod decodes about 4 times faster than from JSON).
func NewLauncherPods(cfg *rest.Config) (*LauncherPods, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("launcher pod cache: %w", err)
	}
	selector := labels.SelectorFromSet(labels.Set{LauncherLabel: LauncherLabelValue}).String()
	lw := toolscache.NewFilteredListWatchFromClient(cs.CoreV1().RESTClient(), "pods", metav1.NamespaceAll,
		func(o *metav1.ListOptions) { o.LabelSelector = selector })
	inf := toolscache.NewSharedIndexInformerWithOptions(lw, &corev1.Pod{}, toolscache.SharedIndexInformerOptions{
		Indexers:          toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc},
		ObjectDescription: "launcher pods",
	})
	if err := inf.SetTransform(packPod); err != nil {
		return nil, err
	}
	return &LauncherPods{informer: inf}, nil
}

// Start runs the informer until ctx ends (manager.Runnable).
func (l *LauncherPods) Start(ctx context.Context) error {
	l.informer.RunWithContext(ctx)
	return nil
}

// NeedLeaderElection is true: standby replicas hold no launcher pods; the
// controllers of a new leader wait for its first list.
func (l *LauncherPods) NeedLeaderElection() bool { return true }

// waitSynced blocks until the first list is in, or ctx ends.
func (l *LauncherPods) waitSynced(ctx context.Context) error {
	if l.informer.HasSynced() {
		return nil
	}
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		return l.informer.HasSynced(), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the launcher pod cache to fill: %w", err)
	}
	return nil
}

// Get reads one launcher pod (client.Reader).
func (l *LauncherPods) Get(ctx context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return fmt.Errorf("the launcher pod cache holds pods, not %T", obj)
	}
	if err := l.waitSynced(ctx); err != nil {
		return err
	}
	item, exists, err := l.informer.GetIndexer().GetByKey(key.Namespace + "/" + key.Name)
	if err != nil {
		return err
	}
	if !exists {
		return apierrors.NewNotFound(corev1.Resource("pods"), key.Name)
	}
	*pod = *unpackPod(item.(*launcherPod))
	return nil
}

// List lists launcher pods (client.Reader): a namespace and a label
// selector are honoured, nothing else is accepted.
func (l *LauncherPods) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	pods, ok := list.(*corev1.PodList)
	if !ok {
		return fmt.Errorf("the launcher pod cache lists pods, not %T", list)
	}
	o := (&client.ListOptions{}).ApplyOptions(opts)
	if (o.FieldSelector != nil && !o.FieldSelector.Empty()) || o.Limit != 0 || o.Continue != "" {
		return fmt.Errorf("the launcher pod cache takes a namespace and a label selector only")
	}
	if err := l.waitSynced(ctx); err != nil {
		return err
	}
	var items []any
	if o.Namespace != "" {
		var err error
		if items, err = l.informer.GetIndexer().ByIndex(toolscache.NamespaceIndex, o.Namespace); err != nil {
			return err
		}
	} else {
		items = l.informer.GetStore().List()
	}
	pods.Items = nil
	for _, item := range items {
		p := item.(*launcherPod)
		// Matched on the packed pod: only the matches are unpacked (the
		// mesh state lists one VMI's pods among a namespace's).
		if o.LabelSelector != nil && !o.LabelSelector.Matches(p.labels()) {
			continue
		}
		pods.Items = append(pods.Items, *unpackPod(p))
	}
	return nil
}

// labels are the labels of the unpacked pod.
func (p *launcherPod) labels() labels.Labels {
	if p.vmiName == "" {
		return labels.Set(nil)
	}
	return createdBy(p.vmiUID)
}

// createdBy is the one label a packed pod keeps, as labels.Labels, without
// a map.
type createdBy types.UID

func (c createdBy) Has(key string) bool { return key == CreatedByLabel }

func (c createdBy) Get(key string) string {
	if key == CreatedByLabel {
		return string(c)
	}
	return ""
}

func (c createdBy) Lookup(key string) (string, bool) {
	if key == CreatedByLabel {
		return string(c), true
	}
	return "", false
}

// Source feeds a controller the cache's events, as corev1.Pods (trimmed),
// to h through the predicates. The controller waits for the first list
// before it starts its workers.
func (l *LauncherPods) Source(h handler.EventHandler, predicates ...predicate.Predicate) source.Source {
	return &syncingSource{Informer: source.Informer{Informer: unpacking{l.informer}, Handler: h, Predicates: predicates},
		synced: l.informer.HasSynced}
}

// syncingSource is source.Informer that the controller waits on
// (source.SyncingSource), as it waits on its Kind sources.
type syncingSource struct {
	source.Informer
	synced func() bool
}

func (s *syncingSource) WaitForSync(ctx context.Context) error {
	if !toolscache.WaitForCacheSync(ctx.Done(), s.synced) {
		return fmt.Errorf("launcher pod cache not filled: %w", ctx.Err())
	}
	return nil
}

// unpacking is the informer as controller-runtime's sources see it: every
// handler gets corev1.Pods.
type unpacking struct{ toolscache.SharedIndexInformer }

var _ cache.Informer = unpacking{}

func (u unpacking) AddEventHandler(h toolscache.ResourceEventHandler) (toolscache.ResourceEventHandlerRegistration, error) {
	return u.SharedIndexInformer.AddEventHandler(unpackEvents(h))
}

func (u unpacking) AddEventHandlerWithResyncPeriod(h toolscache.ResourceEventHandler, resync time.Duration) (toolscache.ResourceEventHandlerRegistration, error) {
	return u.SharedIndexInformer.AddEventHandlerWithResyncPeriod(unpackEvents(h), resync)
}

func (u unpacking) AddEventHandlerWithOptions(h toolscache.ResourceEventHandler, o toolscache.HandlerOptions) (toolscache.ResourceEventHandlerRegistration, error) {
	return u.SharedIndexInformer.AddEventHandlerWithOptions(unpackEvents(h), o)
}

func unpackEvents(h toolscache.ResourceEventHandler) toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    func(obj any, initial bool) { h.OnAdd(unpackAny(obj), initial) },
		UpdateFunc: func(old, obj any) { h.OnUpdate(unpackAny(old), unpackAny(obj)) },
		DeleteFunc: func(obj any) { h.OnDelete(unpackAny(obj)) },
	}
}

func unpackAny(obj any) any {
	switch o := obj.(type) {
	case *launcherPod:
		return unpackPod(o)
	case *packedVMI:
		return unpackVMI(o)
	case toolscache.DeletedFinalStateUnknown:
		o.Obj = unpackAny(o.Obj)
		return o
	}
	return obj
}

// launcherPod is a launcher pod as trimPod leaves it, flat: no maps, no
// slices, the owner reference and the created-by label folded into the VMI's
// name and UID (trimPod keeps them only when they agree).
type launcherPod struct {
	name, namespace, uid, resourceVersion string
	created                               metav1.Time
	deleted                               *metav1.Time
	// The VMI that controls the pod; "" vmiName: none (then nothing below
	// is kept).
	ownerAPIVersion, vmiName string
	vmiUID                   types.UID
	blockOwnerDeletion       triBool
	networks, node           string // networks: trimPod's annotation value
	phase                    corev1.PodPhase
	flags                    podFlags
	initRestartPolicy        corev1.ContainerRestartPolicy // of the istio-proxy init container, when flagged
}

type podFlags uint8

const (
	injectTrue           podFlags = 1 << iota // annotation sidecar.istio.io/inject: "true"
	proxyContainer                            // an istio-proxy container
	proxyInit                                 // an istio-proxy init container
	proxyInitRestart                          // ... with a restartPolicy (initRestartPolicy)
	proxyStatus                               // a status of the istio-proxy container
	proxyStatusReady                          // ... ready
	proxyInitStatus                           // a status of the istio-proxy init container
	proxyInitStatusReady                      // ... ready
)

// triBool is a *bool: unset, false or true.
type triBool uint8

func toTri(b *bool) triBool {
	switch {
	case b == nil:
		return 0
	case *b:
		return 2
	}
	return 1
}

func (t triBool) ptr() *bool {
	if t == 0 {
		return nil
	}
	b := t == 2
	return &b
}

// GetObjectKind and DeepCopyObject make it a runtime.Object, as client-go's
// debugging checks (KUBE_WATCHLIST_INCONSISTENCY_DETECTOR) expect of what an
// informer stores.
func (p *launcherPod) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

func (p *launcherPod) DeepCopyObject() runtime.Object {
	out := *p
	out.deleted = p.deleted.DeepCopy()
	return &out
}

// GetObjectMeta gives the informer's store and indexes the pod's key and
// namespace (meta.Accessor).
func (p *launcherPod) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Name: p.name, Namespace: p.namespace, UID: types.UID(p.uid), ResourceVersion: p.resourceVersion}
}

// packPod is the informer's transform: trimPod, then flattened.
func packPod(in any) (any, error) {
	if _, ok := in.(*corev1.Pod); !ok {
		return in, nil // a tombstone, or already packed
	}
	t, err := trimPod(in)
	if err != nil {
		return nil, err
	}
	pod := t.(*corev1.Pod)
	out := &launcherPod{name: pod.Name, namespace: pod.Namespace, uid: string(pod.UID), resourceVersion: pod.ResourceVersion,
		created: pod.CreationTimestamp, deleted: pod.DeletionTimestamp}
	if len(pod.OwnerReferences) == 0 {
		return out, nil
	}
	owner := pod.OwnerReferences[0]
	out.ownerAPIVersion, out.vmiName, out.vmiUID, out.blockOwnerDeletion = owner.APIVersion, owner.Name, owner.UID, toTri(owner.BlockOwnerDeletion)
	out.networks, out.node, out.phase = pod.Annotations[mesh.NetworksAnnotation], pod.Spec.NodeName, pod.Status.Phase
	if pod.Annotations[mesh.InjectKey] == "true" {
		out.flags |= injectTrue
	}
	if len(pod.Spec.Containers) > 0 {
		out.flags |= proxyContainer
	}
	if len(pod.Spec.InitContainers) > 0 {
		out.flags |= proxyInit
		if rp := pod.Spec.InitContainers[0].RestartPolicy; rp != nil {
			out.flags |= proxyInitRestart
			out.initRestartPolicy = *rp
		}
	}
	if s := pod.Status.ContainerStatuses; len(s) > 0 {
		out.flags |= proxyStatus
		if s[0].Ready {
			out.flags |= proxyStatusReady
		}
	}
	if s := pod.Status.InitContainerStatuses; len(s) > 0 {
		out.flags |= proxyInitStatus
		if s[0].Ready {
			out.flags |= proxyInitStatusReady
		}
	}
	return out, nil
}

// unpackPod is the pod trimPod made, again.
func unpackPod(p *launcherPod) *corev1.Pod {
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: p.namespace, UID: types.UID(p.uid),
		ResourceVersion: p.resourceVersion, CreationTimestamp: p.created, DeletionTimestamp: p.deleted.DeepCopy()}}
	if p.vmiName == "" {
		return out
	}
	controller := true
	out.OwnerReferences = []metav1.OwnerReference{{APIVersion: p.ownerAPIVersion, Kind: "VirtualMachineInstance", Name: p.vmiName,
		UID: p.vmiUID, Controller: &controller, BlockOwnerDeletion: p.blockOwnerDeletion.ptr()}}
	out.Labels = map[string]string{CreatedByLabel: string(p.vmiUID)}
	if p.networks != "" || p.flags&injectTrue != 0 {
		out.Annotations = map[string]string{}
		if p.networks != "" {
			out.Annotations[mesh.NetworksAnnotation] = p.networks
		}
		if p.flags&injectTrue != 0 {
			out.Annotations[mesh.InjectKey] = "true"
		}
	}
	out.Spec.NodeName, out.Status.Phase = p.node, p.phase
	if p.flags&proxyContainer != 0 {
		out.Spec.Containers = []corev1.Container{{Name: mesh.ProxyContainer}}
	}
	if p.flags&proxyInit != 0 {
		c := corev1.Container{Name: mesh.ProxyContainer}
		if p.flags&proxyInitRestart != 0 {
			rp := p.initRestartPolicy
			c.RestartPolicy = &rp
		}
		out.Spec.InitContainers = []corev1.Container{c}
	}
	if p.flags&proxyStatus != 0 {
		out.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: mesh.ProxyContainer, Ready: p.flags&proxyStatusReady != 0}}
	}
	if p.flags&proxyInitStatus != 0 {
		out.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: mesh.ProxyContainer, Ready: p.flags&proxyInitStatusReady != 0}}
	}
	return out
}
