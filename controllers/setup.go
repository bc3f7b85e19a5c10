package controllers

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// SetupWithManager registers the Service controller, the NAD controller
// (unless --cni-nad=off; it starts once the NAD CRD exists) and the
// meshed-VM gauge. The manager's cache must be built with CacheByObject(cfg).
func SetupWithManager(ctx context.Context, mgr ctrl.Manager, meshCfg mesh.Config, cfg Config) error {
	if err := errors.Join(cfg.Validate(), meshCfg.Validate()); err != nil {
		return err
	}
	appOfObject := func(o client.Object) []string {
		if req, ok := appOf(o); ok {
			return []string{req.Name}
		}
		return nil
	}
	idx := mgr.GetFieldIndexer()
	for _, obj := range []client.Object{&kubevirtv1.VirtualMachine{}, &kubevirtv1.VirtualMachineInstance{}} {
		if err := idx.IndexField(ctx, obj, appIndex, appOfObject); err != nil {
			return fmt.Errorf("indexing %T by app: %w", obj, err)
		}
	}
	// Every controller's Events go through one queue: Warnings first, at a
	// rate the API server takes, drops counted (eventqueue.go).
	events := newEventQueue()
	events.gone = func(ctx context.Context, namespace string) bool {
		// Terminating, as the cache shows it. One the cache does not hold
		// may be too new for it yet: its Events are sent.
		ns, err := getNamespace(ctx, mgr.GetClient(), namespace)
		return err == nil && ns.exists && ns.terminating
	}
	if err := mgr.Add(events); err != nil {
		return fmt.Errorf("adding the Event queue: %w", err)
	}
	if err := registerCollector(eventsDropped); err != nil {
		return err
	}
	if err := registerCollector(foreignNADsFound); err != nil {
		return err
	}
	for _, typ := range []string{corev1.EventTypeNormal, corev1.EventTypeWarning} {
		eventsDropped.WithLabelValues(typ) // a series from the start, for alerts
	}
	if err := NewServiceReconciler(mgr, events, meshCfg, cfg).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Service controller: %w", err)
	}
	pods, err := NewLauncherPods(mgr.GetConfig())
	if err != nil {
		return err
	}
	if err := mgr.Add(pods); err != nil {
		return fmt.Errorf("adding the launcher pod cache: %w", err)
	}
	var nads *NADReconciler
	if cfg.NADMode != NADOff {
		nads = NewNADReconciler(mgr, events, meshCfg, cfg, pods)
	}
	states := NewStateReconciler(mgr, events, meshCfg, nads, pods)
	if err := states.SetupWithManager(mgr, pods, cfg.Workers); err != nil {
		return fmt.Errorf("setting up the mesh state controller: %w", err)
	}
	if err := NewExistingReconciler(mgr, events, meshCfg, cfg, states, pods).SetupWithManager(ctx, mgr, pods, cfg.Workers); err != nil {
		return fmt.Errorf("setting up the existing-VMIs controller: %w", err)
	}
	collector := &meshCollector{reader: mgr.GetClient(), cache: mgr.GetCache(), mesh: meshCfg, elected: mgr.Elected(), states: states.counts}
	if nads != nil {
		if err := setupNADController(mgr, nads, func() error { return states.watchNADs(mgr) }); err != nil {
			return fmt.Errorf("setting up the NetworkAttachmentDefinition controller: %w", err)
		}
		collector.missingNAD = nads.reports.countMissing
		collector.foreignNAD = nads.reports.countForeign
	}
	return registerCollector(collector)
}
