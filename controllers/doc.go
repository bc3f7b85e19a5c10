// Package controllers keeps the objects meshed VMs need in step with them:
// the istio-cni NetworkAttachmentDefinition in every mesh namespace (Multus
// clusters), and one Service per app for meshed VirtualMachines and standalone
// VMIs. Both decide membership with internal/mesh, the same function the
// webhook uses, and never change an object virtmesh did not create.
package controllers
