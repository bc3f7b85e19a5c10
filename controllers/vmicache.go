package controllers

import (
	"sync/atomic"
	"time"
	"weak"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// NewInformer builds the manager cache's informers (cache.Options.NewInformer;
// app.NewManager sets it): the VMI informer holds each VMI as a packedVMI,
// what trimVMI keeps in a flat struct of a few hundred bytes, where a
// kubevirtv1.VirtualMachineInstance is 1.5 KB of struct before any field is
// set, plus a map per annotation set and per active pod. At 20,000 VMIs that
// is about 40 MB of live heap (docs/benchmarks.md). Everything that reads
// the informer (the manager's client, controllers' event handlers and
// predicates, field indexes) sees VirtualMachineInstances again, exactly as
// trimVMI leaves them, rebuilt when read (or the one rebuilt last, while
// still in use: unpackVMI). Every other type is held as the manager would
// hold it.
func NewInformer(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
	if _, ok := obj.(*kubevirtv1.VirtualMachineInstance); !ok {
		return toolscache.NewSharedIndexInformer(lw, obj, resync, indexers)
	}
	inf := toolscache.NewSharedIndexInformer(lw, obj, resync, unpackingIndexers(indexers))
	p := &packingInformer{SharedIndexInformer: inf}
	p.indexer = packingIndexer{inf.GetIndexer()}
	// Packed even if no transform is ever set (the manager sets trimVMI).
	_ = inf.SetTransform(packVMIAny)
	return p
}

// packingInformer is a SharedIndexInformer that stores VMIs packed and
// hands out VirtualMachineInstances.
type packingInformer struct {
	toolscache.SharedIndexInformer
	indexer packingIndexer
}

// SetTransform runs t, then packs what it returns.
func (p *packingInformer) SetTransform(t toolscache.TransformFunc) error {
	if t == nil {
		return p.SharedIndexInformer.SetTransform(packVMIAny)
	}
	return p.SharedIndexInformer.SetTransform(func(in any) (any, error) {
		out, err := t(in)
		if err != nil {
			return nil, err
		}
		return packVMIAny(out)
	})
}

func (p *packingInformer) AddEventHandler(h toolscache.ResourceEventHandler) (toolscache.ResourceEventHandlerRegistration, error) {
	return p.SharedIndexInformer.AddEventHandler(unpackEvents(h))
}

func (p *packingInformer) AddEventHandlerWithResyncPeriod(h toolscache.ResourceEventHandler, resync time.Duration) (toolscache.ResourceEventHandlerRegistration, error) {
	return p.SharedIndexInformer.AddEventHandlerWithResyncPeriod(unpackEvents(h), resync)
}

func (p *packingInformer) AddEventHandlerWithOptions(h toolscache.ResourceEventHandler, o toolscache.HandlerOptions) (toolscache.ResourceEventHandlerRegistration, error) {
	return p.SharedIndexInformer.AddEventHandlerWithOptions(unpackEvents(h), o)
}

// AddIndexers indexes VMIs by functions that are given VirtualMachineInstances.
func (p *packingInformer) AddIndexers(indexers toolscache.Indexers) error {
	return p.SharedIndexInformer.AddIndexers(unpackingIndexers(indexers))
}

func (p *packingInformer) GetStore() toolscache.Store     { return p.indexer }
func (p *packingInformer) GetIndexer() toolscache.Indexer { return p.indexer }

// eachVMI calls fn on every cached VMI until it returns false, unpacking
// each into the same object: fn must not keep it or anything in it, nor
// change it. A walk over 20,000 VMIs (the metrics' scrape) then allocates
// next to nothing.
func (p *packingInformer) eachVMI(fn func(*kubevirtv1.VirtualMachineInstance) bool) {
	scratch := &kubevirtv1.VirtualMachineInstance{}
	for _, item := range p.indexer.Indexer.List() {
		if pv, ok := item.(*packedVMI); ok {
			unpackVMIInto(scratch, pv)
			if !fn(scratch) {
				return
			}
		}
	}
}

// AddIndexers indexes VMIs by functions that are given VirtualMachineInstances.
func (i packingIndexer) AddIndexers(indexers toolscache.Indexers) error {
	return i.Indexer.AddIndexers(unpackingIndexers(indexers))
}

// unpackingIndexers are indexers, each given unpacked objects (a new map:
// the caller's is left as given).
func unpackingIndexers(indexers toolscache.Indexers) toolscache.Indexers {
	wrapped := make(toolscache.Indexers, len(indexers))
	for name, f := range indexers {
		wrapped[name] = func(obj any) ([]string, error) { return f(unpackAny(obj)) }
	}
	return wrapped
}

// packingIndexer is the informer's indexer, read as VirtualMachineInstances.
type packingIndexer struct{ toolscache.Indexer }

func (i packingIndexer) Add(obj any) error {
	p, err := packVMIAny(obj)
	if err != nil {
		return err
	}
	return i.Indexer.Add(p)
}

func (i packingIndexer) Update(obj any) error {
	p, err := packVMIAny(obj)
	if err != nil {
		return err
	}
	return i.Indexer.Update(p)
}

func (i packingIndexer) Replace(list []any, rv string) error {
	packed := make([]any, len(list))
	for n, obj := range list {
		p, err := packVMIAny(obj)
		if err != nil {
			return err
		}
		packed[n] = p
	}
	return i.Indexer.Replace(packed, rv)
}

func (i packingIndexer) List() []any { return unpackAll(i.Indexer.List()) }

func (i packingIndexer) Get(obj any) (any, bool, error) {
	item, exists, err := i.Indexer.Get(obj)
	return unpackAny(item), exists, err
}

func (i packingIndexer) GetByKey(key string) (any, bool, error) {
	item, exists, err := i.Indexer.GetByKey(key)
	return unpackAny(item), exists, err
}

func (i packingIndexer) Index(name string, obj any) ([]any, error) {
	items, err := i.Indexer.Index(name, obj)
	return unpackAll(items), err
}

func (i packingIndexer) ByIndex(name, value string) ([]any, error) {
	items, err := i.Indexer.ByIndex(name, value)
	return unpackAll(items), err
}

func unpackAll(items []any) []any {
	for n, item := range items {
		items[n] = unpackAny(item) // client-go's stores return new slices
	}
	return items
}

// packedVMI is a VMI as trimVMI leaves it, flat: the kept annotations in
// fixed fields, the interfaces other than the pod's by name, the active
// pods and conditions as short slices.
type packedVMI struct {
	apiVersion, kind                                    string
	name, generateName, namespace, uid, resourceVersion string
	generation                                          int64
	deleted                                             *metav1.Time
	labels                                              map[string]string
	owners                                              []metav1.OwnerReference
	annotations                                         [len(keptAnnotations)]string
	annotated                                           uint8 // bit n: keptAnnotations[n] is set

	networks   []kubevirtv1.Network
	autoattach triBool
	ifaces     []string // every interface's name, in order
	podIface   int      // the pod interface's index in ifaces; -1: none
	podBinding kubevirtv1.InterfaceBindingMethod
	podPlugin  *kubevirtv1.PluginBinding
	podPorts   []kubevirtv1.Port

	phase      kubevirtv1.VirtualMachineInstancePhase
	node       string
	activePods []activePod
	migration  *packedMigration
	conditions []packedCondition

	// The VMI last unpacked from it, while anyone still holds it: the
	// informer hands every controller's handler the same event, and a
	// resync hands each of them every VMI, unchanged. Those that read it
	// before the collector drops it share one object, as the manager's cache
	// shared the one object it held (and, like it, it must not be changed by
	// those it is handed to). Best effort: handlers that unpack at the same
	// moment, or after a collection, get objects of their own.
	last *lastUnpacked
}

type lastUnpacked struct {
	atomic.Pointer[weak.Pointer[kubevirtv1.VirtualMachineInstance]]
}

// annotated has a bit for each kept annotation: this fails to compile if
// there are more than 8.
var _ [8 - len(keptAnnotations)]struct{}

type activePod struct {
	uid  types.UID
	node string
}

type packedMigration struct {
	start             *metav1.Time
	completed, failed bool
	uid               types.UID
	targetPod         string
}

type packedCondition struct {
	typ    kubevirtv1.VirtualMachineInstanceConditionType
	status corev1.ConditionStatus
	reason string
}

// GetObjectKind and DeepCopyObject make it a runtime.Object, as client-go's
// debugging checks (KUBE_WATCHLIST_INCONSISTENCY_DETECTOR) expect of what an
// informer stores. Nothing in it is changed once packed, so the copy is
// shallow: it shares every map, slice and pointer (a mutation detector
// comparing copies would not see a change made through them).
func (p *packedVMI) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

func (p *packedVMI) DeepCopyObject() runtime.Object {
	out := *p
	return &out
}

// GetObjectMeta gives the informer's store and indexes the VMI's key,
// namespace and labels (meta.Accessor).
func (p *packedVMI) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Name: p.name, Namespace: p.namespace, UID: types.UID(p.uid), ResourceVersion: p.resourceVersion, Labels: p.labels}
}

// packVMIAny packs a VMI as trimVMI would trim it; anything else (a
// tombstone, a packed VMI) passes through.
func packVMIAny(in any) (any, error) {
	vmi, ok := in.(*kubevirtv1.VirtualMachineInstance)
	if !ok {
		return in, nil
	}
	return packVMI(vmi), nil
}

// packVMI keeps exactly what trimVMI keeps (TestPackedVMIUnpacksToTheTrimmedVMI).
func packVMI(vmi *kubevirtv1.VirtualMachineInstance) *packedVMI {
	m := &vmi.ObjectMeta
	out := &packedVMI{apiVersion: vmi.APIVersion, kind: vmi.Kind,
		name: m.Name, generateName: m.GenerateName, namespace: m.Namespace, uid: string(m.UID), resourceVersion: m.ResourceVersion,
		generation: m.Generation, deleted: m.DeletionTimestamp, labels: withoutNodeLabels(m.Labels), owners: m.OwnerReferences,
		networks: vmi.Spec.Networks, autoattach: toTri(vmi.Spec.Domain.Devices.AutoattachPodInterface), podIface: -1,
		phase: vmi.Status.Phase, node: vmi.Status.NodeName, last: &lastUnpacked{}}
	for n, k := range keptAnnotations {
		if v, ok := m.Annotations[k]; ok {
			out.annotations[n], out.annotated = v, out.annotated|1<<n
		}
	}
	pod := mesh.PodInterface(&vmi.Spec)
	if ifaces := vmi.Spec.Domain.Devices.Interfaces; len(ifaces) > 0 {
		out.ifaces = make([]string, len(ifaces))
		for n := range ifaces {
			out.ifaces[n] = ifaces[n].Name
			if &ifaces[n] == pod {
				out.podIface, out.podBinding, out.podPlugin, out.podPorts = n, pod.InterfaceBindingMethod, pod.Binding, pod.Ports
			}
		}
	}
	if len(vmi.Status.ActivePods) > 0 {
		out.activePods = make([]activePod, 0, len(vmi.Status.ActivePods))
		for uid, node := range vmi.Status.ActivePods {
			out.activePods = append(out.activePods, activePod{uid, node})
		}
	}
	if s := vmi.Status.MigrationState; s != nil {
		out.migration = &packedMigration{start: s.StartTimestamp, completed: s.Completed, failed: s.Failed,
			uid: s.MigrationUID, targetPod: s.TargetPod}
	}
	for _, c := range vmi.Status.Conditions {
		if keptCondition(c.Type) {
			out.conditions = append(out.conditions, packedCondition{typ: c.Type, status: c.Status, reason: c.Reason})
		}
	}
	return out
}

// unpackVMI is the VMI trimVMI made, again. It shares the packed VMI's
// labels, owner references, networks, the pod interface's ports, binding
// and binding plugin, and the deletion and migration start times, as a read
// of the manager's cache shared the cached object's (the cache's client
// copies it; handlers and lists without a copy must not change it).
func unpackVMI(p *packedVMI) *kubevirtv1.VirtualMachineInstance {
	if p.last != nil {
		if w := p.last.Load(); w != nil {
			if vmi := w.Value(); vmi != nil {
				return vmi
			}
		}
	}
	out := &kubevirtv1.VirtualMachineInstance{}
	unpackVMIInto(out, p)
	if p.last != nil {
		w := weak.Make(out)
		p.last.Store(&w)
	}
	return out
}

// unpackVMIInto unpacks p into out, reusing the annotations map, interface
// slice, active pods map and conditions slice that out already has (they
// are its own: unpackVMIInto made them).
func unpackVMIInto(out *kubevirtv1.VirtualMachineInstance, p *packedVMI) {
	annotations, ifaces := out.Annotations, out.Spec.Domain.Devices.Interfaces[:0]
	activePods, conditions := out.Status.ActivePods, out.Status.Conditions[:0]
	*out = kubevirtv1.VirtualMachineInstance{}
	out.APIVersion, out.Kind = p.apiVersion, p.kind
	out.ObjectMeta = metav1.ObjectMeta{Name: p.name, GenerateName: p.generateName, Namespace: p.namespace, UID: types.UID(p.uid),
		ResourceVersion: p.resourceVersion, Generation: p.generation, DeletionTimestamp: p.deleted,
		Labels: p.labels, OwnerReferences: p.owners}
	if p.annotated != 0 {
		if annotations == nil {
			annotations = make(map[string]string, len(keptAnnotations))
		}
		clear(annotations)
		for n, k := range keptAnnotations {
			if p.annotated&(1<<n) != 0 {
				annotations[k] = p.annotations[n]
			}
		}
		out.Annotations = annotations
	}
	out.Spec.Networks = p.networks
	out.Spec.Domain.Devices.AutoattachPodInterface = p.autoattach.ptr()
	for n, name := range p.ifaces {
		iface := kubevirtv1.Interface{Name: name}
		if n == p.podIface {
			iface.InterfaceBindingMethod, iface.Binding, iface.Ports = p.podBinding, p.podPlugin, p.podPorts
		}
		ifaces = append(ifaces, iface)
	}
	if len(ifaces) > 0 {
		out.Spec.Domain.Devices.Interfaces = ifaces
	}
	out.Status.Phase, out.Status.NodeName = p.phase, p.node
	if len(p.activePods) > 0 {
		if activePods == nil {
			activePods = make(map[types.UID]string, len(p.activePods))
		}
		clear(activePods)
		for _, a := range p.activePods {
			activePods[a.uid] = a.node
		}
		out.Status.ActivePods = activePods
	}
	if m := p.migration; m != nil {
		out.Status.MigrationState = &kubevirtv1.VirtualMachineInstanceMigrationState{StartTimestamp: m.start,
			Completed: m.completed, Failed: m.failed, MigrationUID: m.uid, TargetPod: m.targetPod}
	}
	for _, c := range p.conditions {
		conditions = append(conditions, kubevirtv1.VirtualMachineInstanceCondition{Type: c.typ, Status: c.status, Reason: c.reason})
	}
	if len(conditions) > 0 {
		out.Status.Conditions = conditions
	}
}
