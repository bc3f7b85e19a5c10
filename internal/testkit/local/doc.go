// Package local runs virtmesh on a local control plane (internal/controlplane)
// the way a cluster runs it: KubeVirt's CRDs and the webhook configuration of
// manifests/webhook installed, the RBAC of manifests/rbac applied, and the
// manager authenticated as its own ServiceAccount, either as bin/virtmesh
// (Start) or in-process (ManagerConfig). The demo, the integration suite and
// the controllers' load program share it.
package local
