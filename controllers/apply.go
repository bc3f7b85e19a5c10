package controllers

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/util/csaupgrade"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// FieldOwner is the field manager of every object virtmesh writes. Services
// and NADs are written by server-side apply: virtmesh owns exactly the fields
// it applies, and a field it stops applying is removed.
const FieldOwner = "virtmesh"

// requeueSoon retries after the cache catches up with a write (ours or
// someone else's) that a reconcile just ran into.
var requeueSoon = reconcile.Result{RequeueAfter: 500 * time.Millisecond}

// serviceApplyConfiguration is want as virtmesh applies it: only the fields
// virtmesh owns (labels, selector, ports, owner references).
func serviceApplyConfiguration(want *corev1.Service) *corev1ac.ServiceApplyConfiguration {
	spec := corev1ac.ServiceSpec().WithSelector(want.Spec.Selector)
	for _, p := range want.Spec.Ports {
		port := corev1ac.ServicePort().WithName(p.Name).WithPort(p.Port).WithProtocol(p.Protocol).WithTargetPort(p.TargetPort)
		if p.AppProtocol != nil {
			port.WithAppProtocol(*p.AppProtocol)
		}
		spec.WithPorts(port)
	}
	ac := corev1ac.Service(want.Name, want.Namespace).WithLabels(want.Labels).WithSpec(spec)
	for _, o := range want.OwnerReferences {
		ac.WithOwnerReferences(metav1ac.OwnerReference().WithAPIVersion(o.APIVersion).WithKind(o.Kind).WithName(o.Name).WithUID(o.UID))
	}
	return ac
}

// serviceApplied is the cheap cached equality check: what virtmesh last
// applied to have (its managed fields, read from the cached object) is want,
// so applying want again would change nothing and no request is sent.
func serviceApplied(have *corev1.Service, want *corev1ac.ServiceApplyConfiguration) bool {
	got := appliedOf(have)
	return got != nil && equality.Semantic.DeepEqual(got, want)
}

// appliedOf is what virtmesh last applied to have, normalized (nil: not
// virtmesh's, or unreadable). Extracting it walks the managed fields with the
// Service schema: the costliest step of a Service reconcile.
func appliedOf(have *corev1.Service) *corev1ac.ServiceApplyConfiguration {
	if !Managed(have) {
		return nil
	}
	got, err := corev1ac.ExtractService(have, FieldOwner)
	if err != nil {
		return nil
	}
	onlyAppliedFields(got)
	// The API server keeps associative lists in its own order.
	if got.Spec != nil {
		slices.SortFunc(got.Spec.Ports, func(a, b corev1ac.ServicePortApplyConfiguration) int {
			return cmp.Or(cmp.Compare(deref(a.Port), deref(b.Port)), cmp.Compare(deref(a.Protocol), deref(b.Protocol)))
		})
	}
	slices.SortFunc(got.OwnerReferences, func(a, b metav1ac.OwnerReferenceApplyConfiguration) int {
		return cmp.Or(cmp.Compare(deref(a.Kind), deref(b.Kind)), cmp.Compare(deref(a.Name), deref(b.Name)))
	})
	return got
}

// appliedCache remembers, per Service version, a fingerprint of what virtmesh
// last applied: a full resync reconciles every Service, and extracting each
// again is most of what the manager allocates then (docs/benchmarks.md). A
// fingerprint, not the extracted configuration, keeps the memory per Service
// under a hundred bytes.
type appliedCache struct{ m sync.Map } // namespace/name → appliedEntry

type appliedEntry struct {
	uid, resourceVersion string
	mine                 bool   // virtmesh applied something readable
	fingerprint          uint64 // of what it applied, normalized
}

// fingerprint hashes a normalized apply configuration's JSON, which is
// canonical (map keys sorted; nil and empty both omitted, as
// equality.Semantic treats them alike).
func fingerprint(ac *corev1ac.ServiceApplyConfiguration) (uint64, error) {
	raw, err := json.Marshal(ac)
	if err != nil {
		return 0, err
	}
	h := fnv.New64a()
	_, _ = h.Write(raw)
	return h.Sum64(), nil
}

// applied is serviceApplied, remembering the extraction per version.
func (c *appliedCache) applied(have *corev1.Service, want *corev1ac.ServiceApplyConfiguration) bool {
	key := have.Namespace + "/" + have.Name
	v, ok := c.m.Load(key)
	e, _ := v.(appliedEntry)
	if !ok || e.uid != string(have.UID) || e.resourceVersion != have.ResourceVersion {
		e = appliedEntry{uid: string(have.UID), resourceVersion: have.ResourceVersion}
		if got := appliedOf(have); got != nil {
			fp, err := fingerprint(got)
			if err != nil {
				return false
			}
			e.mine, e.fingerprint = true, fp
		}
		c.m.Store(key, e)
	}
	if !e.mine {
		return false
	}
	fp, err := fingerprint(want)
	return err == nil && fp == e.fingerprint
}

// forget drops a Service that is gone.
func (c *appliedCache) forget(namespace, name string) { c.m.Delete(namespace + "/" + name) }

// onlyAppliedFields keeps, of what virtmesh owns, the fields it applies: a
// Service it created (and then moved to server-side apply) also owns the
// fields the API server defaulted on create (type, sessionAffinity, ...),
// which virtmesh does not apply and need not apply again.
func onlyAppliedFields(got *corev1ac.ServiceApplyConfiguration) {
	if got.Spec == nil {
		return
	}
	spec := corev1ac.ServiceSpec()
	spec.Selector = got.Spec.Selector
	for _, p := range got.Spec.Ports {
		spec.Ports = append(spec.Ports, corev1ac.ServicePortApplyConfiguration{
			Name: p.Name, Port: p.Port, Protocol: p.Protocol, TargetPort: p.TargetPort, AppProtocol: p.AppProtocol})
	}
	got.Spec = spec
	got.Annotations = nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// nadApplyConfiguration is DesiredNAD as virtmesh applies it. The NAD client
// has no typed apply configurations, so it goes as an unstructured object.
func nadApplyConfiguration(want *nadv1.NetworkAttachmentDefinition) (runtime.ApplyConfiguration, error) {
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(want)
	if err != nil {
		return nil, fmt.Errorf("encoding NetworkAttachmentDefinition %s/%s: %w", want.Namespace, want.Name, err)
	}
	u := &unstructured.Unstructured{Object: obj}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return client.ApplyConfigurationFromUnstructured(u), nil
}

// hasUpdateEntry reports whether obj carries fields virtmesh wrote with a
// create or an update (operation Update): a Service created by virtmesh, or
// written by a version before server-side apply. Cheap: the cache keeps only
// virtmesh's own managedFields entries.
func hasUpdateEntry(obj client.Object) bool {
	for _, e := range obj.GetManagedFields() {
		if e.Manager == FieldOwner && e.Operation == metav1.ManagedFieldsOperationUpdate && e.Subresource == "" {
			return true
		}
	}
	return false
}

// migrateFieldOwner moves the fields virtmesh wrote with Create or Update
// (field manager "virtmesh", operation Update) under its apply field manager,
// as kubectl does for client-side apply: otherwise those fields stay
// co-owned and a port virtmesh stops applying is never removed. live must be
// read from the API server, with every manager's entries: the patch replaces
// metadata.managedFields whole (guarded by its resourceVersion). It sends one
// JSON patch, only when there is something to move, and reports whether it did.
func migrateFieldOwner(ctx context.Context, c client.Client, live client.Object) (bool, error) {
	patch, err := csaupgrade.UpgradeManagedFieldsPatch(live, sets.New(FieldOwner), FieldOwner)
	if err != nil || patch == nil {
		return false, err
	}
	if err := c.Patch(ctx, live, client.RawPatch(types.JSONPatchType, patch)); err != nil {
		return false, fmt.Errorf("moving the fields of %s/%s to server-side apply: %w", live.GetNamespace(), live.GetName(), err)
	}
	return true, nil
}

// changesVisible reports whether applying want changes what users see of
// have (selector, ports, owner references), so the change is worth an Event;
// a write that only moves field ownership is not.
func changesVisible(have, want *corev1.Service) bool {
	return !equality.Semantic.DeepEqual(have.Spec.Selector, want.Spec.Selector) ||
		!equality.Semantic.DeepEqual(have.Spec.Ports, want.Spec.Ports) ||
		!equality.Semantic.DeepEqual(have.OwnerReferences, want.OwnerReferences)
}
