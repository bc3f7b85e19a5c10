package controllers

import (
	"context"
	"fmt"
	"sync"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/record"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// +kubebuilder:rbac:groups=k8s.cni.cncf.io,resources=network-attachment-definitions,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get;list;watch
// +kubebuilder:rbac:groups=kubevirt.io,resources=virtualmachineinstances;virtualmachines,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// NADReconciler keeps the istio-cni NetworkAttachmentDefinition in every mesh
// namespace. Its requests are namespace names.
type NADReconciler struct {
	Client   client.Client
	Config   Config
	Recorder record.EventRecorder
}

// Reconcile ensures or removes virtmesh's NAD in one namespace.
func (r *NADReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	ns, err := getNamespace(ctx, r.Client, req.Name)
	if err != nil || !ns.exists || ns.terminating {
		// Nothing is done in a terminating namespace: it is going away with its NADs.
		return reconcile.Result{}, err
	}
	need, why, err := r.needsNAD(ctx, ns)
	if err != nil {
		return reconcile.Result{}, err
	}
	have := &nadv1.NetworkAttachmentDefinition{}
	err = r.Client.Get(ctx, client.ObjectKey{Namespace: ns.name, Name: r.Config.NADName}, have)
	if err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, err
	}
	exists := err == nil
	nsRef := &corev1.ObjectReference{Kind: "Namespace", APIVersion: "v1", Name: ns.name}
	switch {
	case need && !exists:
		if err := r.Client.Create(ctx, DesiredNAD(ns.name, r.Config.NADName)); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return requeueSoon, nil // the cache has not seen it yet
			}
			return reconcile.Result{}, fmt.Errorf("creating NetworkAttachmentDefinition %s/%s: %w", ns.name, r.Config.NADName, err)
		}
		log.FromContext(ctx).Info("created NetworkAttachmentDefinition", "name", r.Config.NADName, "why", why)
		r.Recorder.Eventf(nsRef, corev1.EventTypeNormal, ReasonNADCreated,
			"virtmesh created NetworkAttachmentDefinition %q so meshed VMs can start here (%s)", r.Config.NADName, why)
	case need && Managed(have) && have.Spec.Config != "":
		restored := have.DeepCopy()
		restored.Spec.Config = ""
		if err := r.Client.Update(ctx, restored); err != nil {
			return reconcile.Result{}, fmt.Errorf("restoring NetworkAttachmentDefinition %s/%s: %w", ns.name, r.Config.NADName, err)
		}
		r.Recorder.Eventf(nsRef, corev1.EventTypeNormal, ReasonNADRestored,
			"virtmesh restored the empty config of its NetworkAttachmentDefinition %q (istio-cni reads its own configuration)", r.Config.NADName)
	case !need && exists && Managed(have):
		err := r.Client.Delete(ctx, have, client.Preconditions{UID: &have.UID, ResourceVersion: &have.ResourceVersion})
		if client.IgnoreNotFound(err) != nil {
			if apierrors.IsConflict(err) {
				return requeueSoon, nil
			}
			return reconcile.Result{}, fmt.Errorf("deleting NetworkAttachmentDefinition %s/%s: %w", ns.name, r.Config.NADName, err)
		}
		log.FromContext(ctx).Info("deleted NetworkAttachmentDefinition", "name", r.Config.NADName, "why", why)
		r.Recorder.Eventf(nsRef, corev1.EventTypeNormal, ReasonNADDeleted,
			"virtmesh deleted its NetworkAttachmentDefinition %q: %s", r.Config.NADName, why)
	}
	// A NAD someone else created satisfies the need and is never touched.
	return reconcile.Result{}, nil
}

// needsNAD: the namespace's labels put VMs in the mesh, or it holds a meshed
// VMI or a VM whose VMIs will be meshed.
func (r *NADReconciler) needsNAD(ctx context.Context, ns namespaceInfo) (bool, string, error) {
	if d := mesh.NamespaceInMesh(ns.name, ns.labels, r.Config.Mesh); d.InMesh {
		return true, d.Reason(), nil
	}
	vmis := &kubevirtv1.VirtualMachineInstanceList{}
	if err := r.Client.List(ctx, vmis, client.InNamespace(ns.name), client.UnsafeDisableDeepCopy); err != nil {
		return false, "", err
	}
	for i := range vmis.Items {
		if vmis.Items[i].DeletionTimestamp == nil && vmiMeshed(ns, &vmis.Items[i], r.Config.Mesh) {
			return true, fmt.Sprintf("VMI %q is in the mesh", vmis.Items[i].Name), nil
		}
	}
	vms := &kubevirtv1.VirtualMachineList{}
	if err := r.Client.List(ctx, vms, client.InNamespace(ns.name), client.UnsafeDisableDeepCopy); err != nil {
		return false, "", err
	}
	for i := range vms.Items {
		if vms.Items[i].DeletionTimestamp == nil && vmMeshed(ns, &vms.Items[i], r.Config.Mesh) {
			return true, fmt.Sprintf("VirtualMachine %q is in the mesh", vms.Items[i].Name), nil
		}
	}
	return false, fmt.Sprintf("namespace %q is not in the mesh and holds no meshed VM", ns.name), nil
}

// setupNADController waits for the NAD CRD, then starts the NAD controller:
// a cluster without Multus runs virtmesh without error, and one where Multus
// is installed later gets its NADs without a restart.
func setupNADController(mgr ctrl.Manager, cfg Config) error {
	gate := &nadCRDGate{mgr: mgr, cfg: cfg}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		gate.checkMissing(ctx)
		return nil
	})); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("nad-crd").
		For(&apiextensionsv1.CustomResourceDefinition{}).
		Complete(gate)
}

type nadCRDGate struct {
	mgr     ctrl.Manager
	cfg     Config
	once    sync.Once
	err     error
	waiting sync.Once
}

func (g *nadCRDGate) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if req.Name != NADCRDName {
		return reconcile.Result{}, nil
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := g.mgr.GetClient().Get(ctx, req.NamespacedName, crd); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	established := false
	for _, c := range crd.Status.Conditions {
		established = established || (c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue)
	}
	if !established {
		return reconcile.Result{}, nil
	}
	g.once.Do(func() {
		log.FromContext(ctx).Info("NetworkAttachmentDefinition CRD is installed; managing istio-cni NADs", "name", g.cfg.NADName)
		g.err = g.startNADController()
	})
	return reconcile.Result{}, g.err
}

// checkMissing logs once when the CRD is missing at start-up.
func (g *nadCRDGate) checkMissing(ctx context.Context) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	err := g.mgr.GetAPIReader().Get(ctx, client.ObjectKey{Name: NADCRDName}, crd)
	if apierrors.IsNotFound(err) {
		g.waiting.Do(func() {
			log.FromContext(ctx).Info("the NetworkAttachmentDefinition CRD is not installed (no Multus?): " +
				"not managing istio-cni NADs until it appears; use --cni-nad=off to silence this")
		})
	}
}

func (g *nadCRDGate) startNADController() error {
	r := &NADReconciler{Client: g.mgr.GetClient(), Config: g.cfg, Recorder: g.mgr.GetEventRecorderFor("virtmesh-nad")}
	toNamespace := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: o.GetNamespace()}}}
	})
	return ctrl.NewControllerManagedBy(g.mgr).
		Named("nad").
		For(&corev1.Namespace{}, builder.OnlyMetadata, builder.WithPredicates(predicate.Or(predicate.LabelChangedPredicate{}, deletionChanged()))).
		Watches(&nadv1.NetworkAttachmentDefinition{}, toNamespace, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetName() == g.cfg.NADName
		}))).
		Watches(&kubevirtv1.VirtualMachineInstance{}, toNamespace, builder.WithPredicates(membershipChanged())).
		Watches(&kubevirtv1.VirtualMachine{}, toNamespace, builder.WithPredicates(membershipChanged())).
		WithOptions(controller.Options{MaxConcurrentReconciles: g.cfg.Workers}).
		Complete(r)
}

// membershipChanged passes creates, deletes, and updates of the labels or
// annotations membership reads (on the object or, for a VM, its template).
func membershipChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool { return trimmedChanged(e.ObjectOld, e.ObjectNew) }}
}

func deletionChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return (e.ObjectOld.GetDeletionTimestamp() == nil) != (e.ObjectNew.GetDeletionTimestamp() == nil)
	}}
}
