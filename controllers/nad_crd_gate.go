package controllers

import (
	"context"
	"sync"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get;list;watch

// NADCRDName is the CustomResourceDefinition of NetworkAttachmentDefinitions.
const NADCRDName = "network-attachment-definitions.k8s.cni.cncf.io"

// setupNADController waits for the NAD CRD, then starts the NAD controller:
// a cluster without Multus runs virtmesh without error, and one where Multus
// is installed later gets its NADs without a restart.
// then runs once the CRD is served, after the NAD controller is set up.
func setupNADController(mgr ctrl.Manager, r *NADReconciler, then ...func() error) error {
	gate := &nadCRDGate{mgr: mgr, r: r, then: then}
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

// nadCRDGate starts the NAD controller once the NAD CRD is established.
type nadCRDGate struct {
	mgr     ctrl.Manager
	r       *NADReconciler
	then    []func() error
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
		log.FromContext(ctx).Info("NetworkAttachmentDefinition CRD is installed; managing istio-cni NADs", "name", g.r.Config.NADName)
		g.err = g.r.SetupWithManager(g.mgr)
		for _, f := range g.then {
			if g.err == nil {
				g.err = f()
			}
		}
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
