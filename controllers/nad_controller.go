package controllers

import (
	"context"
	"fmt"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/record"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// +kubebuilder:rbac:groups=k8s.cni.cncf.io,resources=network-attachment-definitions,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=kubevirt.io,resources=virtualmachineinstances;virtualmachines,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// NADReconciler keeps the istio-cni NetworkAttachmentDefinition in every mesh
// namespace. Its requests are namespace names.
type NADReconciler struct {
	Client   client.Client // the manager's, with FieldOwner: reads from the cache
	Mesh     mesh.Config
	Config   Config
	Recorder record.EventRecorder
}

// NewNADReconciler builds the reconciler on the manager's client.
func NewNADReconciler(mgr ctrl.Manager, meshCfg mesh.Config, cfg Config) *NADReconciler {
	return &NADReconciler{Client: client.WithFieldOwner(mgr.GetClient(), FieldOwner), Mesh: meshCfg, Config: cfg,
		Recorder: mgr.GetEventRecorderFor("virtmesh-nad")}
}

// SetupWithManager watches namespaces, NADs of the configured name, and the
// VMs and VMIs whose membership can make a namespace need one.
func (r *NADReconciler) SetupWithManager(mgr ctrl.Manager) error {
	toNS := handler.EnqueueRequestsFromMapFunc(toNamespace)
	return ctrl.NewControllerManagedBy(mgr).
		Named("nad").
		For(&corev1.Namespace{}, builder.OnlyMetadata, builder.WithPredicates(namespaceChanged())).
		Watches(&nadv1.NetworkAttachmentDefinition{}, toNS, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetName() == r.Config.NADName
		}))).
		Watches(&kubevirtv1.VirtualMachineInstance{}, toNS, builder.WithPredicates(membershipChanged())).
		Watches(&kubevirtv1.VirtualMachine{}, toNS, builder.WithPredicates(membershipChanged())).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Config.Workers}).
		Complete(r)
}

// Reconcile ensures or removes virtmesh's NAD in one namespace. A NAD of that
// name someone else created satisfies the need and is never touched.
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
	want := DesiredNAD(ns.name, r.Config.NADName)
	have := &nadv1.NetworkAttachmentDefinition{}
	err = r.Client.Get(ctx, client.ObjectKeyFromObject(want), have)
	if err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, err
	}
	exists := err == nil
	nsRef := &corev1.ObjectReference{Kind: "Namespace", APIVersion: "v1", Name: ns.name}
	switch {
	case need && !exists:
		// Created, never applied: a NAD of that name someone else creates
		// meanwhile makes the create fail rather than be merged into.
		if err := r.Client.Create(ctx, want); err != nil {
			return requeueOnConflict(fmt.Errorf("creating NetworkAttachmentDefinition %s/%s: %w", ns.name, want.Name, err))
		}
		log.FromContext(ctx).Info("created NetworkAttachmentDefinition", "name", want.Name, "why", why)
		r.Recorder.Eventf(nsRef, corev1.EventTypeNormal, ReasonNADCreated,
			"virtmesh created NetworkAttachmentDefinition %q so meshed VMs can start here (%s)", want.Name, why)
	case need && Virtmeshs(have) && !nadUpToDate(have, want):
		if err := r.restore(ctx, want, have.ResourceVersion); err != nil {
			return requeueOnConflict(err)
		}
		r.Recorder.Eventf(nsRef, corev1.EventTypeNormal, ReasonNADRestored,
			"virtmesh restored the empty config of its NetworkAttachmentDefinition %q (istio-cni reads its own configuration)", want.Name)
	case !need && exists && Virtmeshs(have):
		err := r.Client.Delete(ctx, have, client.Preconditions{UID: &have.UID, ResourceVersion: &have.ResourceVersion})
		if client.IgnoreNotFound(err) != nil {
			return requeueOnConflict(fmt.Errorf("deleting NetworkAttachmentDefinition %s/%s: %w", ns.name, want.Name, err))
		}
		log.FromContext(ctx).Info("deleted NetworkAttachmentDefinition", "name", want.Name, "why", why)
		r.Recorder.Eventf(nsRef, corev1.EventTypeNormal, ReasonNADDeleted,
			"virtmesh deleted its NetworkAttachmentDefinition %q: %s", want.Name, why)
	}
	return reconcile.Result{}, nil
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
