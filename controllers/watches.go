package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// How watched objects map to requests, and which changes matter. The
// Service controller's requests are namespace/app; the NAD controller's are
// namespace names.

// appOf is the request a VM or VMI maps to: its app. A VM stands for its
// VMIs in a Service, but whether its running VMI is in the mesh can keep
// the VM a member (ServiceReconciler.members), so they map to it too.
func appOf(o client.Object) (reconcile.Request, bool) {
	w, ok := workloadOf(o)
	if !ok {
		return reconcile.Request{}, false
	}
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: w.meta.Namespace, Name: w.app()}}, true
}

// appHandler enqueues the app of a VM or VMI, and on an update that changes
// its app, the app it leaves too. forget is called with a deleted object's UID.
func appHandler(forget func(types.UID)) handler.EventHandler {
	type q = workqueue.TypedRateLimitingInterface[reconcile.Request]
	add := func(queue q, o client.Object) {
		if req, ok := appOf(o); ok && req.Name != "" {
			queue.Add(req)
		}
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, queue q) { add(queue, e.Object) },
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, queue q) {
			if e.ObjectOld.GetResourceVersion() == e.ObjectNew.GetResourceVersion() {
				// A resync. Every Service virtmesh holds is reconciled by
				// the Services' own resync, and an app kept from having one
				// is retried by its own requeues: reconciling every app again
				// for each VM and VMI tripled a resync's work at 20,000 VMIs.
				return
			}
			if !trimmedChanged(e.ObjectOld, e.ObjectNew) && !endedOrRestarted(e.ObjectOld, e.ObjectNew) {
				return // a status update: nothing a Service depends on
			}
			add(queue, e.ObjectOld)
			add(queue, e.ObjectNew)
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, queue q) {
			forget(e.Object.GetUID())
			add(queue, e.Object)
		},
		GenericFunc: func(_ context.Context, e event.GenericEvent, queue q) { add(queue, e.Object) },
	}
}

// endedOrRestarted: a VMI's phase went final or back (a VM's membership
// can depend on whether its VMI still runs).
func endedOrRestarted(a, b client.Object) bool {
	va, ok := a.(*kubevirtv1.VirtualMachineInstance)
	vb, ok2 := b.(*kubevirtv1.VirtualMachineInstance)
	return ok && ok2 && va.IsFinal() != vb.IsFinal()
}

// appsInNamespace maps a namespace whose labels changed to every app in it:
// each may have joined or left the mesh.
func appsInNamespace(c client.Reader) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		seen := map[reconcile.Request]bool{}
		_ = eachWorkload(ctx, c, func(w workload) bool {
			if w.standalone() {
				seen[reconcile.Request{NamespacedName: types.NamespacedName{Namespace: w.meta.Namespace, Name: w.app()}}] = true
			}
			return true
		}, client.InNamespace(o.GetName()))
		svcs := &corev1.ServiceList{}
		if err := c.List(ctx, svcs, client.InNamespace(o.GetName()), client.UnsafeDisableDeepCopy); err == nil {
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
}

// toNamespace maps an object to its namespace's request.
func toNamespace(_ context.Context, o client.Object) []reconcile.Request {
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: o.GetNamespace()}}}
}

// allNamespaces maps any event to every namespace: an injector or a shared
// NAD changed, which every namespace's plan may depend on.
func allNamespaces(c client.Reader) handler.MapFunc {
	return func(ctx context.Context, _ client.Object) []reconcile.Request {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
		if err := c.List(ctx, list); err != nil {
			return nil
		}
		out := make([]reconcile.Request, 0, len(list.Items))
		for i := range list.Items {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Name: list.Items[i].Name}})
		}
		return out
	}
}

// membershipChanged passes creates, deletes, and updates of the labels or
// annotations membership reads (on the object or, for a VM, its template).
func membershipChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool { return trimmedChanged(e.ObjectOld, e.ObjectNew) }}
}

// namespaceChanged passes namespace label changes and the start of deletion.
func namespaceChanged() predicate.Predicate {
	return predicate.Or(predicate.LabelChangedPredicate{}, predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return (e.ObjectOld.GetDeletionTimestamp() == nil) != (e.ObjectNew.GetDeletionTimestamp() == nil)
	}})
}
