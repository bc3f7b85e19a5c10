package app

// The manager's own permissions, independent of any controller. controller-gen
// turns these markers into manifests/rbac (make manifests).

// Leader election: the Lease, and the Events controller-runtime records on it.
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=virtmesh-system,resources=leases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",namespace=virtmesh-system,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,namespace=virtmesh-system,resources=events,verbs=create;patch
