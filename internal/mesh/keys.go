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
	// MutationsAnnotation records what the webhook changed, e.g. "inject,binding,app".
	MutationsAnnotation = "virtmesh.io/mutations"
)
