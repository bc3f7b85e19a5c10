package mesh

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

// State is where a VMI really stands with the mesh, read from its launcher
// pod, not from what virtmesh asked for. The set is fixed and small: it is a
// metric label.
type State string

const (
	// Meshed means: the launcher pod has a ready istio-proxy and KubeVirt routes
	// the VM's traffic through it.
	Meshed State = "Meshed"
	// Starting means: the proxy is there but not ready yet.
	Starting State = "Starting"
	// Pending means: no launcher pod yet, or one that cannot start.
	Pending State = "Pending"
	// NotInMesh means: nothing puts the VM in the mesh (namespace not labelled,
	// opted out, excluded), and it is not.
	NotInMesh State = "NotInMesh"
	// NotMeshable means: the VM cannot join the mesh (no pod network, a binding
	// Istio cannot work with).
	NotMeshable State = "NotMeshable"
	// NeedsRestart means: in a mesh namespace, running without the inject
	// annotation (created before the namespace joined the mesh, or before
	// virtmesh): its next live migration gives it a proxy KubeVirt does not
	// serve.
	NeedsRestart State = "NeedsRestart"
	// NoProxy means: the VMI asks for the mesh, but no Istio injector gave its
	// pod a proxy.
	NoProxy State = "NoProxy"
	// Broken means: the launcher pod has a proxy, but KubeVirt's Istio networking
	// is off for the VMI (or its binding cannot work with one): the pod
	// never becomes Ready.
	Broken State = "Broken"
	// Pinned means: virtmesh keeps a VMI created before its namespace joined the
	// mesh out of it (sidecar.istio.io/inject=false) until it restarts or is
	// onboarded, so its migrations stay consistent.
	Pinned State = "Pinned"
	// Onboarding means: virtmesh gave a pinned VMI the mesh metadata and migrates
	// it into the mesh.
	Onboarding State = "Onboarding"
	// Stopped means: the VMI is not running (finished, or being deleted).
	Stopped State = "Stopped"
)

// States are every State, in the order status tables and the metric use.
var States = []State{Meshed, Starting, Pending, NotInMesh, NotMeshable, NeedsRestart, NoProxy, Broken, Pinned, Onboarding, Stopped}

// Trouble reports whether the state needs someone to act: a VM that breaks
// or falls out of the mesh on its next migration, or runs broken now.
func (s State) Trouble() bool { return s == Broken || s == NeedsRestart }

// virtmesh's keys for VMIs that were running before their namespace joined
// the mesh.
const (
	// PinnedAnnotation on a VMI: virtmesh pinned it out of the mesh
	// (sidecar.istio.io/inject=false) and why.
	PinnedAnnotation = "virtmesh.io/pinned"
	// OnboardingAnnotation on a VMI: virtmesh is migrating it into the mesh.
	OnboardingAnnotation = "virtmesh.io/onboarding"
)

// Istio's proxy in a launcher pod.
const (
	ProxyContainer = "istio-proxy"
	// NetworksAnnotation is the Multus annotation a launcher pod references
	// its NetworkAttachmentDefinitions with.
	NetworksAnnotation = "k8s.v1.cni.cncf.io/networks"
)

// StateInput is what a VMI's mesh state is computed from.
type StateInput struct {
	VMI             *kubevirtv1.VirtualMachineInstance
	NamespaceLabels map[string]string
	// Pod is the VMI's active launcher pod (see ActivePod), nil if none.
	Pod *corev1.Pod
	// Others are its other unfinished launcher pods: a migration's target.
	Others []*corev1.Pod
	// MissingNAD names ("namespace/name") a NetworkAttachmentDefinition the
	// pod references, or the Istio injector will make it reference, that
	// does not exist; empty when none is known missing.
	MissingNAD string
	Config     Config
}

// Status is a VMI's State with what it means for its owner.
type Status struct {
	State State
	// Proxy is the launcher pod's istio-proxy: "ready", "not ready",
	// "none", or "-" without a pod.
	Proxy string
	// Reason says why, in plain words; NextStep what the owner can do
	// ("" when nothing is to be done).
	Reason   string
	NextStep string
}

// Proxy is what a launcher pod says about its istio-proxy.
type Proxy struct {
	// Present: a container named istio-proxy, or an init container of that
	// name that keeps running (Istio's native sidecar).
	Present, Native, Ready bool
}

// ProxyOf reads the istio-proxy of a pod.
func ProxyOf(pod *corev1.Pod) Proxy {
	var p Proxy
	for _, c := range pod.Spec.Containers {
		if c.Name == ProxyContainer {
			p.Present = true
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == ProxyContainer && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			p.Present, p.Native = true, true
		}
	}
	statuses := pod.Status.ContainerStatuses
	if p.Native {
		statuses = pod.Status.InitContainerStatuses
	}
	for _, s := range statuses {
		if s.Name == ProxyContainer {
			p.Ready = s.Ready
		}
	}
	return p
}

func (p Proxy) String() string {
	switch {
	case !p.Present:
		return "none"
	case p.Ready:
		return "ready"
	}
	return "not ready"
}

// ActivePod picks a VMI's active launcher pod among its pods (those labelled
// kubevirt.io/created-by=<its UID>): the one on the VMI's node, as KubeVirt
// reads status.activePods, else the newest not finished one. During a
// migration the source stays active until the VMI moves.
func ActivePod(vmi *kubevirtv1.VirtualMachineInstance, pods []*corev1.Pod) *corev1.Pod {
	var newest *corev1.Pod
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if _, active := vmi.Status.ActivePods[p.UID]; active && vmi.Status.NodeName != "" && p.Spec.NodeName == vmi.Status.NodeName {
			return p
		}
		if newest == nil || newest.CreationTimestamp.Before(&p.CreationTimestamp) ||
			(newest.CreationTimestamp.Equal(&p.CreationTimestamp) && newest.Name < p.Name) {
			newest = p
		}
	}
	if vmi.Status.NodeName != "" && newest != nil && newest.Spec.NodeName != vmi.Status.NodeName && len(vmi.Status.ActivePods) > 0 {
		// A migration target that has not taken over: not the active one.
		if _, active := vmi.Status.ActivePods[newest.UID]; !active {
			return nil
		}
	}
	return newest
}

// OtherPods are a VMI's unfinished launcher pods other than active: a
// migration's target, while it runs.
func OtherPods(active *corev1.Pod, pods []*corev1.Pod) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range pods {
		if p != active && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// PodNetworks are the NetworkAttachmentDefinitions ("namespace/name") a pod
// references in its Multus annotation, in either form (comma-separated
// "[ns/]name[@iface]", or JSON).
func PodNetworks(pod *corev1.Pod) []string {
	v := strings.TrimSpace(pod.Annotations[NetworksAnnotation])
	if v == "" {
		return nil
	}
	var out []string
	add := func(ns, name string) {
		if ns == "" {
			ns = pod.Namespace
		}
		if name != "" {
			out = append(out, ns+"/"+name)
		}
	}
	if strings.HasPrefix(v, "[") {
		var elems []struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		}
		if json.Unmarshal([]byte(v), &elems) != nil {
			return nil
		}
		for _, e := range elems {
			add(e.Namespace, e.Name)
		}
		return out
	}
	for _, e := range strings.Split(v, ",") {
		e, _, _ = strings.Cut(strings.TrimSpace(e), "@")
		if ns, name, ok := strings.Cut(e, "/"); ok {
			add(ns, name)
		} else {
			add("", e)
		}
	}
	return out
}

// KubeVirtIstioOn reports whether KubeVirt switches its Istio networking on
// for the VMI: the annotation sidecar.istio.io/inject, "true" in any case
// (pkg/network/istio, ProxyInjectionEnabled), which KubeVirt reads when it
// starts the VM and on every migration target.
func KubeVirtIstioOn(vmi *kubevirtv1.VirtualMachineInstance) bool {
	return strings.EqualFold(vmi.Annotations[InjectKey], "true")
}

// RunningBindingSupported reports whether Istio works with the binding a VMI
// runs with: masquerade or passt. (Bridge, which the webhook switches for
// new VMIs, cannot carry a proxy's traffic.)
func RunningBindingSupported(spec *kubevirtv1.VirtualMachineInstanceSpec) (bool, string) {
	iface := PodInterface(spec)
	if iface == nil {
		return true, ""
	}
	b := iface.InterfaceBindingMethod
	switch {
	case b.Masquerade != nil:
		return true, "masquerade"
	case b.PasstBinding != nil, iface.Binding != nil && iface.Binding.Name == "passt":
		return true, "passt"
	case iface.Binding != nil:
		return false, "the " + iface.Binding.Name + " binding plugin"
	case b.Bridge != nil:
		return false, "bridge"
	case b.SRIOV != nil:
		return false, "SR-IOV"
	}
	return true, ""
}

// RestartAdvice is how the owner restarts vmi, in words: through its VM,
// its replica set, or by re-creating it.
func RestartAdvice(vmi *kubevirtv1.VirtualMachineInstance) string {
	switch {
	case OwnedByVM(&vmi.ObjectMeta):
		return "restart the VM (virtctl restart " + vmiOwnerName(vmi) + ")"
	case ownerOfKind(vmi.OwnerReferences, "VirtualMachineInstanceReplicaSet") != "":
		return "delete the VMI " + vmi.Name + " (its replica set starts a new one)"
	}
	return "delete and re-create the VMI " + vmi.Name
}

// StateOf computes a VMI's State from the VMI, its active launcher pod,
// its namespace and the NAD situation. Pure: the controllers and kubectl
// virtmesh give it what they read, and get the same answer.
func StateOf(in StateInput) Status {
	vmi := in.VMI
	restart := RestartAdvice(vmi)
	// pin keeps the next migration consistent, without a restart.
	pin := "kubectl label vmi " + vmi.Name + " -n " + vmi.Namespace + " " + InjectKey + "=false (its next migration then stays out of the mesh), then " + restart + " when convenient"
	proxy := "-"
	var p Proxy
	if in.Pod != nil {
		p = ProxyOf(in.Pod)
		proxy = p.String()
	}
	st := func(s State, reason, next string) Status {
		return Status{State: s, Proxy: proxy, Reason: reason, NextStep: next}
	}

	if vmi.DeletionTimestamp != nil {
		return st(Stopped, "the VMI is being deleted", "")
	}
	if vmi.IsFinal() {
		return st(Stopped, fmt.Sprintf("the VMI is not running (phase %s)", vmi.Status.Phase), "")
	}
	d := Decide(vmi.Namespace, in.NamespaceLabels, vmi.Labels, vmi.Annotations, in.Config)
	nsInMesh := NamespaceInMesh(vmi.Namespace, in.NamespaceLabels, in.Config).InMesh
	kvIstio := KubeVirtIstioOn(vmi)

	if !HasPodNetwork(&vmi.Spec) {
		if nsInMesh || d.InMesh || kvIstio {
			return st(NotMeshable, "it has no pod network, the only one Istio's proxy can serve",
				"nothing, if it needs no mesh; else give it a pod network bound as masquerade and "+restart)
		}
		return st(NotInMesh, d.Reason()+" (and it has no pod network)", "")
	}
	bindingOK, binding := RunningBindingSupported(&vmi.Spec)

	if in.Pod == nil || in.Pod.Status.Phase == corev1.PodPending {
		why := "its launcher pod does not exist yet"
		switch {
		case in.Pod != nil:
			why = "its launcher pod " + in.Pod.Name + " is pending (not scheduled, or its volumes, image or networks are not ready)"
		case vmi.Status.Phase == kubevirtv1.Running:
			why = "its launcher pod is gone (evicted or deleted)"
		}
		if in.MissingNAD != "" && (d.InMesh || kvIstio) {
			return st(Pending, fmt.Sprintf("%s, and it needs NetworkAttachmentDefinition %s, which does not exist", why, in.MissingNAD),
				nadFix(in.MissingNAD))
		}
		if in.Pod == nil || !p.Present || kvIstio {
			return st(Pending, why, "")
		}
	}

	// KubeVirt set up its Istio networking in the pod only if the VMI asked
	// for it when the pod was created: virt-controller copies the VMI's
	// annotations onto its launcher pod then, and virt-handler reads the same
	// VMI. A pod without the annotation was created before the VMI got it.
	podIstio := in.Pod != nil && strings.EqualFold(in.Pod.Annotations[InjectKey], "true")
	onboarding := vmi.Annotations[OnboardingAnnotation] != ""

	if p.Present && (podIstio || !kvIstio || !onboarding) {
		switch {
		case !kvIstio:
			return st(Broken, "its launcher pod has an istio-proxy, but the VMI lacks the annotation "+InjectKey+`="true", `+
				"so KubeVirt does not route the VM's traffic through the proxy: the proxy's readiness probe reaches the guest "+
				"and the pod never becomes Ready (a migration after the namespace joined the mesh does this)",
				restart+": the webhook meshes the new VMI (label the VMI "+InjectKey+"=false first, so a migration meanwhile goes back out of the mesh)")
		case !bindingOK:
			return st(Broken, "its launcher pod has an istio-proxy, but its pod network is bound as "+binding+", which Istio cannot work with",
				restart+": the webhook binds the new VMI's pod network as masquerade")
		case !podIstio:
			next := restart
			if binding == "masquerade" && liveMigratable(vmi) {
				next = "live-migrate it (virtctl migrate " + vmiOwnerName(vmi) + "): its new pod gets KubeVirt's Istio networking; or " + restart
			}
			return st(Broken, "its launcher pod has an istio-proxy, but was created before the VMI got the annotation "+InjectKey+`="true", `+
				"so KubeVirt did not set up its Istio networking in that pod: the pod never becomes Ready", next)
		case p.Ready && paused(vmi):
			return st(Meshed, "its launcher pod's istio-proxy is ready, but the VM is paused: it serves nothing and its pod is not Ready",
				"virtctl unpause vmi "+vmi.Name)
		case p.Ready:
			return st(Meshed, "its launcher pod's istio-proxy is ready", "")
		}
		return st(Starting, "its launcher pod's istio-proxy is not ready yet", "wait; if it stays so, read the istio-proxy container's log")
	}

	// No proxy.
	if !kvIstio {
		for _, o := range in.Others {
			if ProxyOf(o).Present {
				return st(Broken, "it is migrating into launcher pod "+o.Name+", which has an istio-proxy KubeVirt will not serve (the VMI lacks "+
					"the annotation "+InjectKey+`="true"): once it moves there the pod never becomes Ready and the VM drops out of its Service`,
					"cancel the migration (kubectl delete vmim -n "+vmi.Namespace+" for this VMI), then "+pin)
			}
		}
	}
	switch {
	case onboarding && !podIstio:
		// The pod predates the onboarding's update (a pod created after it,
		// without a proxy, is NoProxy below).
		o, err := ParseOnboarding(vmi.Annotations[OnboardingAnnotation])
		if err != nil {
			return st(Onboarding, "virtmesh is bringing it into the mesh, but "+err.Error(), "remove the annotation "+OnboardingAnnotation)
		}
		if !p.Present && kvIstio && movedInAfter(vmi, in.Pod, o.MeshedSince()) {
			return st(Broken, "it is being brought into the mesh by "+o.Describe()+", but a live migration that started after the VMI "+
				"got the mesh metadata moved it into launcher pod "+in.Pod.Name+", created before that, without an istio-proxy: KubeVirt "+
				"sets up its Istio networking from the VMI when it prepares a migration's target, so inbound connections most likely "+
				"wait for a proxy that is not there (a node drain's migration created just before the onboarding's update does this)",
				"live-migrate it now (virtctl migrate "+vmiOwnerName(vmi)+"): the new pod gets a proxy KubeVirt serves; virtmesh's "+
					"next onboarding attempt does the same")
		}
		why := "it is being brought into the mesh by " + o.Describe()
		if p.Present {
			why += "; its current launcher pod's istio-proxy predates that, and KubeVirt does not serve it"
		}
		if o.RetryAfter != nil {
			return st(Onboarding, why, "wait, or "+restart)
		}
		return st(Onboarding, why, "wait for the migration")
	case vmi.Annotations[PinnedAnnotation] != "" && !d.InMesh:
		how := restart
		if binding == "masquerade" {
			how = "kubectl virtmesh onboard " + vmiOwnerName(vmi) + " -n " + vmi.Namespace + " (a live migration), or " + restart
		}
		why := "it was running before its namespace joined the mesh; virtmesh labelled it " + InjectKey + "=false " +
			"so its live migrations keep it consistently outside"
		if PinAbandoned(vmi.Annotations) {
			why += " (onboarding it by live migration failed, so virtmesh does not try again by itself)"
		}
		return st(Pinned, why, "to bring it in: "+how)
	case !bindingOK && (nsInMesh || d.InMesh):
		return st(NotMeshable, "its pod network is bound as "+binding+", which Istio cannot work with",
			"nothing, if it needs no mesh; else "+restart+": the webhook binds the new VMI's pod network as masquerade")
	case kvIstio:
		return st(NoProxy, "the VMI asks for the mesh ("+InjectKey+`="true"), but no Istio injector gave its launcher pod a proxy `+
			"(Istio not installed, an Istio revision that is not installed, or its injector was down when the pod was created)",
			"kubectl virtmesh check-namespace "+vmi.Namespace+"; once an injector injects there, "+migrateOr(vmi, binding, restart))
	case d.InMesh && d.Ambient:
		return st(NeedsRestart, d.Reason()+", and the VMI was created before that: ambient may enrol its running pod, which KubeVirt "+
			"does not support (inbound connections hang, kubevirt/kubevirt#18871)", restart+": the webhook gives the new VMI a sidecar and takes it out of ambient")
	case d.InMesh:
		next := pin
		if binding == "masquerade" {
			next += "; or bring it in now by a live migration: kubectl virtmesh onboard " + vmiOwnerName(vmi) + " -n " + vmi.Namespace
		}
		return st(NeedsRestart, d.Reason()+", but the VMI was created before that (it lacks the annotation "+InjectKey+`="true"`+
			"): its next live migration gives its pod a proxy KubeVirt does not serve, and the VM drops out of its Service", next)
	}
	next := ""
	switch {
	case d.why == whyExcluded:
		// virtmesh never mutates VMIs here: labelling it would break them.
	case d.Denied || !nsInMesh:
		next = "to mesh it: label namespace " + vmi.Namespace + " " + NamespaceInjectionLabel + "=enabled, then " + restart
	}
	if v, ok := InjectValue(vmi.Labels, vmi.Annotations); ok && !Truthy(v) && d.why != whyExcluded {
		where := "the VM's template"
		if !OwnedByVM(&vmi.ObjectMeta) {
			where = "the VMI's definition"
		}
		next = "to mesh it: remove " + InjectKey + "=" + v + " from " + where + ", then " + restart
	}
	return st(NotInMesh, d.Reason(), next)
}

// migrateOr is how to move vmi into a new launcher pod rendered from its
// metadata as it is: a live migration where it can, else restart.
func migrateOr(vmi *kubevirtv1.VirtualMachineInstance, binding, restart string) string {
	if binding == "masquerade" && liveMigratable(vmi) {
		return "live-migrate it (virtctl migrate " + vmiOwnerName(vmi) + "), or " + restart
	}
	return restart
}

// movedInAfter: the VMI's last migration completed into pod and started
// after t, or in the same second (both are recorded to the second).
func movedInAfter(vmi *kubevirtv1.VirtualMachineInstance, pod *corev1.Pod, t time.Time) bool {
	m := vmi.Status.MigrationState
	return pod != nil && m != nil && m.Completed && !m.Failed && m.TargetPod == pod.Name && m.StartTimestamp != nil &&
		!m.StartTimestamp.Time.Before(t)
}

// liveMigratable: the VMI's LiveMigratable condition is True.
func liveMigratable(vmi *kubevirtv1.VirtualMachineInstance) bool {
	for _, c := range vmi.Status.Conditions {
		if c.Type == kubevirtv1.VirtualMachineInstanceIsMigratable && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// paused: the VMI's Paused condition is True.
func paused(vmi *kubevirtv1.VirtualMachineInstance) bool {
	for _, c := range vmi.Status.Conditions {
		if c.Type == kubevirtv1.VirtualMachineInstancePaused && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func nadFix(nad string) string {
	ns, name, _ := strings.Cut(nad, "/")
	if ns == "default" && name == "istio-cni" {
		return "install istio-cni with provider: multus (OpenShift Service Mesh 3: an IstioCNI resource), which creates default/istio-cni"
	}
	if strings.HasPrefix(name, "v2-") {
		return "add namespace " + ns + " to the ServiceMeshMemberRoll: OpenShift Service Mesh 2 then creates " + name + " there"
	}
	return "create NetworkAttachmentDefinition " + nad + " (virtmesh does so with --cni-nad=auto or per-namespace, unless off)"
}

// vmiOwnerName is the VM's name for a VMI a VM owns, else the VMI's.
func vmiOwnerName(vmi *kubevirtv1.VirtualMachineInstance) string {
	if n := ownerOfKind(vmi.OwnerReferences, "VirtualMachine"); n != "" {
		return n
	}
	return vmi.Name
}
