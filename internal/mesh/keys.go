package mesh

// Istio's keys. KubeVirt reads InjectKey as an annotation, Istio as a label:
// virtmesh sets both.
const (
	InjectKey               = "sidecar.istio.io/inject"
	RevisionLabel           = "istio.io/rev"
	NamespaceInjectionLabel = "istio-injection"
	DataplaneModeLabel      = "istio.io/dataplane-mode"
	DataplaneModeAmbient    = "ambient"
	DataplaneModeNone       = "none"
	// RerouteAnnotation tells Istio 1.25+ which virtual interface to
	// redirect (it no longer honours traffic.sidecar.istio.io/kubevirtInterfaces,
	// the only one KubeVirt before 1.7 sets).
	RerouteAnnotation = "istio.io/reroute-virtual-interfaces"
	// KubeVirtMasqueradeBridge is the launcher pod's bridge for masquerade.
	KubeVirtMasqueradeBridge = "k6t-eth0"
)

// Telemetry labels Istio and Kiali read, and the well-known labels they may come from.
const (
	AppLabel            = "app"
	VersionLabel        = "version"
	AppNameLabel        = "app.kubernetes.io/name"
	AppVersionLabel     = "app.kubernetes.io/version"
	NamespaceNameLabel  = "kubernetes.io/metadata.name"
	KubeVirtVMNameLabel = "vm.kubevirt.io/name"
)

// virtmesh's own keys.
const (
	// EnforceLabel on a namespace forbids VM owners to opt out of the mesh.
	EnforceLabel = "virtmesh.io/enforce"
	// MutationsAnnotation records what the webhook changed, e.g. "inject,binding,reroute,app".
	MutationsAnnotation = "virtmesh.io/mutations"
)

// Keys on the objects virtmesh creates, and on the VMs that shape them.
const (
	// ManagedByLabel marks NetworkAttachmentDefinitions and Services virtmesh
	// created; virtmesh never changes or deletes an object without it.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "virtmesh"
	// ServiceAnnotation "false" on a VM or VMI keeps it out of any Service.
	ServiceAnnotation = "virtmesh.io/service"
	// PortProtocolsAnnotation on a VM or VMI names the protocol of ports whose
	// names do not, e.g. "8080=http,9090=grpc".
	PortProtocolsAnnotation = "virtmesh.io/port-protocols"
)
