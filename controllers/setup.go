package controllers

import (
	"context"
	"errors"
	"fmt"

	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// SetupWithManager registers the Service controller, the NAD controller
// (unless --cni-nad=off) and the meshed-VM gauge. The manager's cache must be
// built with CacheByObject(cfg).
func SetupWithManager(ctx context.Context, mgr ctrl.Manager, cfg Config) error {
	if err := errors.Join(cfg.Validate(), cfg.Mesh.Validate()); err != nil {
		return err
	}
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &kubevirtv1.VirtualMachine{}, appIndex, func(o client.Object) []string {
		return []string{mesh.VMApp(o.(*kubevirtv1.VirtualMachine))}
	}); err != nil {
		return fmt.Errorf("indexing VirtualMachines by app: %w", err)
	}
	if err := idx.IndexField(ctx, &kubevirtv1.VirtualMachineInstance{}, appIndex, func(o client.Object) []string {
		vmi := o.(*kubevirtv1.VirtualMachineInstance)
		if mesh.OwnedByVM(&vmi.ObjectMeta) {
			return nil
		}
		return []string{mesh.VMIApp(&vmi.ObjectMeta)}
	}); err != nil {
		return fmt.Errorf("indexing VirtualMachineInstances by app: %w", err)
	}
	if err := setupServiceController(mgr, cfg); err != nil {
		return fmt.Errorf("setting up the Service controller: %w", err)
	}
	if cfg.NADMode != NADOff {
		if err := setupNADController(mgr, cfg); err != nil {
			return fmt.Errorf("setting up the NetworkAttachmentDefinition controller: %w", err)
		}
	}
	return registerCollector(&meshCollector{reader: mgr.GetClient(), cfg: cfg, elected: mgr.Elected()})
}
