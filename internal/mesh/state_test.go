package mesh

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

// vmi is a running VMI of VM "db" in namespace "vms", its pod network bound
// as masquerade, as the webhook leaves it (meshed=true) or as it was created
// before the namespace joined the mesh.
func stateVMI(meshed bool, edit ...func(*kubevirtv1.VirtualMachineInstance)) *kubevirtv1.VirtualMachineInstance {
	vmi := &kubevirtv1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "vms", UID: "vmi-uid", Labels: map[string]string{},
			Annotations:     map[string]string{},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: "db", UID: "vm-uid"}}},
		Spec: kubevirtv1.VirtualMachineInstanceSpec{
			Networks: []kubevirtv1.Network{{Name: "default", NetworkSource: kubevirtv1.NetworkSource{Pod: &kubevirtv1.PodNetwork{}}}},
			Domain: kubevirtv1.DomainSpec{Devices: kubevirtv1.Devices{Interfaces: []kubevirtv1.Interface{{Name: "default",
				InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Masquerade: &kubevirtv1.InterfaceMasquerade{}}}}}},
		},
		Status: kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Running, NodeName: "node-a",
			ActivePods: map[types.UID]string{"pod-a": "node-a"}},
	}
	if meshed {
		vmi.Labels[InjectKey] = "true"
		vmi.Annotations[InjectKey] = "true"
	}
	for _, e := range edit {
		e(vmi)
	}
	return vmi
}

type podShape int

const (
	noProxy podShape = iota
	proxyReady
	proxyNotReady
	nativeProxyReady
)

func launcherPod(shape podShape, phase corev1.PodPhase) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "virt-launcher-db-abcde", Namespace: "vms", UID: "pod-a"},
		Spec:       corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "compute"}}},
		Status:     corev1.PodStatus{Phase: phase, ContainerStatuses: []corev1.ContainerStatus{{Name: "compute", Ready: phase == corev1.PodRunning}}},
	}
	always := corev1.ContainerRestartPolicyAlways
	switch shape {
	case proxyReady, proxyNotReady:
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: ProxyContainer})
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{Name: ProxyContainer, Ready: shape == proxyReady})
	case nativeProxyReady:
		pod.Spec.InitContainers = []corev1.Container{{Name: "istio-validation"}, {Name: ProxyContainer, RestartPolicy: &always}}
		pod.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "istio-validation"}, {Name: ProxyContainer, Ready: true}}
	}
	return pod
}

// meshPod is a launcher pod created for a VMI that asked for the mesh:
// virt-controller copied the VMI's inject annotation onto it.
func meshPod(shape podShape) *corev1.Pod {
	pod := launcherPod(shape, corev1.PodRunning)
	pod.Annotations = map[string]string{InjectKey: "true"}
	return pod
}

func TestMeshState(t *testing.T) {
	enabled := map[string]string{NamespaceInjectionLabel: "enabled"}
	running := corev1.PodRunning
	for name, tc := range map[string]struct {
		in     StateInput
		want   State
		reason string // a phrase the reason must hold
		next   string // a phrase the next step must hold ("" : no next step)
		proxy  string
	}{
		"meshed, proxy ready": {
			in: StateInput{VMI: stateVMI(true), NamespaceLabels: enabled, Pod: meshPod(proxyReady)}, want: Meshed, proxy: "ready"},
		"meshed but paused": {
			in: StateInput{VMI: stateVMI(true, func(v *kubevirtv1.VirtualMachineInstance) {
				v.Status.Conditions = []kubevirtv1.VirtualMachineInstanceCondition{{Type: kubevirtv1.VirtualMachineInstancePaused, Status: corev1.ConditionTrue}}
			}), NamespaceLabels: enabled, Pod: meshPod(proxyReady)}, want: Meshed, reason: "paused", next: "virtctl unpause vmi db"},
		"meshed, native sidecar ready": {
			in: StateInput{VMI: stateVMI(true), NamespaceLabels: enabled, Pod: meshPod(nativeProxyReady)}, want: Meshed, proxy: "ready"},
		"meshed by its own opt-in, namespace not labelled": {
			in: StateInput{VMI: stateVMI(true), Pod: meshPod(proxyReady)}, want: Meshed, proxy: "ready"},
		"proxy not ready": {
			in: StateInput{VMI: stateVMI(true), NamespaceLabels: enabled, Pod: meshPod(proxyNotReady)}, want: Starting,
			reason: "not ready yet", next: "istio-proxy container's log", proxy: "not ready"},
		"no pod yet": {
			in: StateInput{VMI: stateVMI(true, phase(kubevirtv1.Scheduling)), NamespaceLabels: enabled}, want: Pending, reason: "does not exist yet", proxy: "-"},
		"no pod yet, the shared NAD missing": {
			in:   StateInput{VMI: stateVMI(true, phase(kubevirtv1.Scheduling)), NamespaceLabels: enabled, MissingNAD: "default/istio-cni"},
			want: Pending, reason: "default/istio-cni, which does not exist", next: "provider: multus"},
		"pod pending on a missing Maistra NAD": {
			in:   StateInput{VMI: stateVMI(true, phase(kubevirtv1.Scheduled)), NamespaceLabels: enabled, Pod: launcherPod(proxyNotReady, corev1.PodPending), MissingNAD: "vms/v2-5-istio-cni"},
			want: Pending, reason: "v2-5-istio-cni, which does not exist", next: "ServiceMeshMemberRoll", proxy: "not ready"},
		"pod pending, with its proxy, nothing missing (unschedulable, say)": {
			in:   StateInput{VMI: stateVMI(true, phase(kubevirtv1.Scheduled)), NamespaceLabels: enabled, Pod: launcherPod(proxyNotReady, corev1.PodPending)},
			want: Pending, reason: "is pending", proxy: "not ready"},
		"running, its pod gone (evicted)": {
			in: StateInput{VMI: stateVMI(true), NamespaceLabels: enabled}, want: Pending, reason: "gone"},
		"pod pending on virtmesh's own NAD": {
			in:   StateInput{VMI: stateVMI(true, phase(kubevirtv1.Scheduled)), NamespaceLabels: enabled, Pod: launcherPod(noProxy, corev1.PodPending), MissingNAD: "vms/istio-cni"},
			want: Pending, next: "--cni-nad", proxy: "none"},
		"namespace not labelled": {
			in: StateInput{VMI: stateVMI(false), Pod: launcherPod(noProxy, running)}, want: NotInMesh, reason: "no Istio injection label",
			next: "istio-injection=enabled", proxy: "none"},
		"opted out": {
			in:   StateInput{VMI: stateVMI(false, optedOut), NamespaceLabels: enabled, Pod: launcherPod(noProxy, running)},
			want: NotInMesh, reason: "opts out", next: "remove sidecar.istio.io/inject=false"},
		"excluded namespace: never told to label it": {
			in: StateInput{VMI: stateVMI(false, inNamespace("kube-system")), NamespaceLabels: enabled, Pod: launcherPod(noProxy, running),
				Config: Config{ExcludedNamespaces: []string{"kube-system"}}},
			want: NotInMesh, reason: "excluded", next: "-none-"},
		"opted-out standalone VMI": {
			in:   StateInput{VMI: stateVMI(false, standalone, optedOut), NamespaceLabels: enabled, Pod: launcherPod(noProxy, running)},
			want: NotInMesh, next: "from the VMI's definition"},
		"created before the labelling, migrating into a proxied pod now": {
			in: StateInput{VMI: stateVMI(false), NamespaceLabels: enabled, Pod: launcherPod(noProxy, running),
				Others: []*corev1.Pod{launcherPod(proxyNotReady, corev1.PodPending)}},
			want: Broken, reason: "migrating into", next: "sidecar.istio.io/inject=false"},
		"created before its namespace went ambient": {
			in: StateInput{VMI: stateVMI(false), NamespaceLabels: map[string]string{DataplaneModeLabel: DataplaneModeAmbient}, Pod: launcherPod(noProxy, running),
				Config: DefaultConfig()},
			want: NeedsRestart, reason: "ambient may enrol", next: "virtctl restart db"},
		"a VMI of a replica set": {
			in: StateInput{VMI: stateVMI(false, func(v *kubevirtv1.VirtualMachineInstance) {
				v.OwnerReferences = []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstanceReplicaSet", Name: "rs"}}
			}), NamespaceLabels: enabled, Pod: launcherPod(noProxy, running)},
			want: NeedsRestart, next: "delete the VMI db (its replica set starts a new one)"},
		"no pod network, mesh namespace": {
			in:   StateInput{VMI: stateVMI(true, noPodNetwork), NamespaceLabels: enabled, Pod: launcherPod(noProxy, running)},
			want: NotMeshable, reason: "no pod network", next: "masquerade"},
		"no pod network, namespace not in the mesh": {
			in: StateInput{VMI: stateVMI(false, noPodNetwork), Pod: launcherPod(noProxy, running)}, want: NotInMesh, reason: "no pod network"},
		"bridge, running since before the mesh": {
			in:   StateInput{VMI: stateVMI(false, bridge), NamespaceLabels: enabled, Pod: launcherPod(noProxy, running)},
			want: NotMeshable, reason: "bound as bridge", next: "virtctl restart db"},
		"created before the namespace was labelled": {
			in:   StateInput{VMI: stateVMI(false), NamespaceLabels: enabled, Pod: launcherPod(noProxy, running)},
			want: NeedsRestart, reason: "created before", next: "kubectl label vmi db -n vms sidecar.istio.io/inject=false", proxy: "none"},
		"standalone VMI created before the namespace was labelled": {
			in:   StateInput{VMI: stateVMI(false, standalone), NamespaceLabels: enabled, Pod: launcherPod(noProxy, running)},
			want: NeedsRestart, next: "delete and re-create the VMI db"},
		"the hazard: migrated into a proxy KubeVirt does not serve": {
			in:   StateInput{VMI: stateVMI(false), NamespaceLabels: enabled, Pod: launcherPod(proxyNotReady, running)},
			want: Broken, reason: "never becomes Ready", next: "virtctl restart db", proxy: "not ready"},
		"a proxy on a bridge binding": {
			in:   StateInput{VMI: stateVMI(true, bridge), NamespaceLabels: enabled, Pod: launcherPod(proxyNotReady, running)},
			want: Broken, reason: "bridge"},
		"asks for the mesh, no injector injected it": {
			in:   StateInput{VMI: stateVMI(true), NamespaceLabels: enabled, Pod: launcherPod(noProxy, running)},
			want: NoProxy, reason: "no Istio injector", next: "check-namespace vms"},
		"pinned": {
			in: StateInput{VMI: stateVMI(false, optedOut, annotate(PinnedAnnotation, "running before")),
				NamespaceLabels: enabled, Pod: launcherPod(noProxy, running)},
			want: Pinned, reason: "labelled it sidecar.istio.io/inject=false", next: "kubectl virtmesh onboard db -n vms"},
		"pinned passt VMI: restart only": {
			in: StateInput{VMI: stateVMI(false, passt, optedOut, annotate(PinnedAnnotation, "x")),
				NamespaceLabels: enabled, Pod: launcherPod(noProxy, running)},
			want: Pinned, next: "virtctl restart db"},
		"onboarding": {
			in: StateInput{VMI: stateVMI(true, annotate(OnboardingAnnotation, OnboardingStatus{Attempt: 1, Migration: "virtmesh-onboard-db-1"}.Encode())),
				NamespaceLabels: enabled, Pod: launcherPod(noProxy, running)},
			want: Onboarding, reason: "live migration virtmesh-onboard-db-1 (attempt 1 of 3)", next: "wait for the migration"},
		"onboarding: an attempt failed": {
			in: StateInput{VMI: stateVMI(true, annotate(OnboardingAnnotation, OnboardingStatus{Attempt: 2, Migration: "virtmesh-onboard-db-2",
				RetryAfter: &metav1.Time{Time: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}, LastFailure: "target pod unschedulable"}.Encode())),
				NamespaceLabels: enabled, Pod: launcherPod(noProxy, running)},
			want: Onboarding, reason: "(attempt 2 of 3) failed: target pod unschedulable; the VMI carries the mesh metadata but its pod has no proxy (harmless while the VM stays in a pod whose networking KubeVirt set up before that); next attempt after 2026-12-03T10:00:00Z",
			next: "wait, or restart the VM"},
		"onboarding: a migration that started after the update moved it into a pod created before, without a proxy": {
			in: StateInput{VMI: stateVMI(true, annotate(OnboardingAnnotation, OnboardingStatus{Attempt: 1, Migration: "virtmesh-onboard-db-1",
				Started: metav1.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)}.Encode()), movedIn("virt-launcher-db-abcde", time.Date(2026, 12, 3, 9, 0, 5, 0, time.UTC))),
				NamespaceLabels: enabled, Pod: launcherPod(noProxy, running)},
			want: Broken, reason: "most likely wait for a proxy that is not there", next: "virtctl migrate db"},
		"onboarding, a later attempt: judged by when the VMI first got the mesh metadata": {
			in: StateInput{VMI: stateVMI(true, annotate(OnboardingAnnotation, OnboardingStatus{Attempt: 2, Migration: "virtmesh-onboard-db-2",
				Started: metav1.Date(2026, 12, 3, 9, 5, 0, 0, time.UTC), MeshedAt: &metav1.Time{Time: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)}}.Encode()),
				movedIn("virt-launcher-db-abcde", time.Date(2026, 12, 3, 9, 0, 5, 0, time.UTC))),
				NamespaceLabels: enabled, Pod: launcherPod(noProxy, running)},
			want: Broken, reason: "most likely wait for a proxy that is not there"},
		"onboarding: a migration that started before the update moved it into that pod": {
			in: StateInput{VMI: stateVMI(true, annotate(OnboardingAnnotation, OnboardingStatus{Attempt: 1, Migration: "virtmesh-onboard-db-1",
				Started: metav1.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)}.Encode()), movedIn("virt-launcher-db-abcde", time.Date(2026, 12, 3, 8, 59, 0, 0, time.UTC))),
				NamespaceLabels: enabled, Pod: launcherPod(noProxy, running)},
			want: Onboarding, reason: "live migration virtmesh-onboard-db-1", next: "wait for the migration"},
		"onboarding: someone else's annotation": {
			in: StateInput{VMI: stateVMI(true, annotate(OnboardingAnnotation, "soon")),
				NamespaceLabels: enabled, Pod: launcherPod(noProxy, running)},
			want: Onboarding, reason: "is not virtmesh's", next: "remove the annotation virtmesh.io/onboarding"},
		"onboarded: the target pod has the proxy": {
			in:   StateInput{VMI: stateVMI(true, annotate(OnboardingAnnotation, "x")), NamespaceLabels: enabled, Pod: meshPod(proxyReady)},
			want: Meshed},
		"a proxy in a pod created before the VMI asked for the mesh": {
			in: StateInput{VMI: stateVMI(true, func(v *kubevirtv1.VirtualMachineInstance) {
				v.Status.Conditions = []kubevirtv1.VirtualMachineInstanceCondition{{Type: kubevirtv1.VirtualMachineInstanceIsMigratable, Status: corev1.ConditionTrue}}
			}), NamespaceLabels: enabled, Pod: launcherPod(proxyReady, running)},
			want: Broken, reason: "created before the VMI got the annotation", next: "virtctl migrate db", proxy: "ready"},
		"a proxy in a pod created before the VMI asked for the mesh, cannot live-migrate": {
			in:   StateInput{VMI: stateVMI(true), NamespaceLabels: enabled, Pod: launcherPod(proxyReady, running)},
			want: Broken, reason: "created before the VMI got the annotation", next: "virtctl restart db"},
		"onboarding a VM whose pod's proxy predates the update": {
			in: StateInput{VMI: stateVMI(true, annotate(OnboardingAnnotation, OnboardingStatus{Attempt: 1, Migration: "virtmesh-onboard-db-1"}.Encode())),
				NamespaceLabels: enabled, Pod: launcherPod(proxyReady, running)},
			want: Onboarding, reason: "predates that", next: "wait for the migration"},
		"onboarding: the pod created after the update has no proxy": {
			in: StateInput{VMI: stateVMI(true, annotate(OnboardingAnnotation, OnboardingStatus{Attempt: 1, Migration: "virtmesh-onboard-db-1"}.Encode())),
				NamespaceLabels: enabled, Pod: meshPod(noProxy)},
			want: NoProxy, reason: "no Istio injector"},
		"finished": {
			in: StateInput{VMI: stateVMI(true, phase(kubevirtv1.Succeeded)), NamespaceLabels: enabled}, want: Stopped, reason: "Succeeded"},
		"being deleted": {
			in:   StateInput{VMI: stateVMI(true, deleting), NamespaceLabels: enabled, Pod: launcherPod(proxyReady, running)},
			want: Stopped, reason: "being deleted"},
	} {
		t.Run(name, func(t *testing.T) {
			got := StateOf(tc.in)
			if got.State != tc.want {
				t.Fatalf("state %s (%s), want %s", got.State, got.Reason, tc.want)
			}
			if got.Reason == "" || !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("reason %q, want it to hold %q", got.Reason, tc.reason)
			}
			if tc.next == "-none-" && got.NextStep != "" {
				t.Errorf("next step %q, want none", got.NextStep)
			} else if tc.next != "" && tc.next != "-none-" && !strings.Contains(got.NextStep, tc.next) {
				t.Errorf("next step %q, want it to hold %q", got.NextStep, tc.next)
			}
			if tc.proxy != "" && got.Proxy != tc.proxy {
				t.Errorf("proxy %q, want %q", got.Proxy, tc.proxy)
			}
			if tc.want.Trouble() && got.NextStep == "" {
				t.Error("a state that needs action has no next step")
			}
		})
	}
}

// Every state is produced by some case above, and each has a metric label.
func TestStatesAreFixed(t *testing.T) {
	seen := map[State]bool{}
	for _, s := range States {
		if seen[s] {
			t.Errorf("%s listed twice", s)
		}
		seen[s] = true
	}
	if len(States) != 11 {
		t.Errorf("%d states; update the metric's documentation when adding one", len(States))
	}
}

func TestActivePod(t *testing.T) {
	vmi := stateVMI(true)
	src := launcherPod(proxyReady, corev1.PodRunning)
	target := launcherPod(proxyNotReady, corev1.PodRunning)
	target.Name, target.UID, target.Spec.NodeName = "virt-launcher-db-target", "pod-b", "node-b"
	target.CreationTimestamp = metav1.NewTime(time.Now())
	old := launcherPod(noProxy, corev1.PodSucceeded)
	old.Name, old.UID = "virt-launcher-db-old", "pod-old"
	if got := ActivePod(vmi, []*corev1.Pod{old, target, src}); got != src {
		t.Errorf("during a migration: got %v, want the source", got.Name)
	}
	vmi.Status.NodeName, vmi.Status.ActivePods = "node-b", map[types.UID]string{"pod-b": "node-b"}
	src.Status.Phase = corev1.PodSucceeded
	if got := ActivePod(vmi, []*corev1.Pod{old, target, src}); got != target {
		t.Errorf("after a migration: got %v, want the target", got)
	}
	pending := stateVMI(true, phase(kubevirtv1.Scheduling), func(v *kubevirtv1.VirtualMachineInstance) {
		v.Status.NodeName, v.Status.ActivePods = "", nil
	})
	if got := ActivePod(pending, []*corev1.Pod{src, old}); got != nil {
		t.Errorf("only finished pods: got %v, want none", got.Name)
	}
	src.Status.Phase = corev1.PodPending
	if got := ActivePod(pending, []*corev1.Pod{src}); got != src {
		t.Errorf("a scheduling VMI's pod: got %v", got)
	}
}

func TestPodNetworks(t *testing.T) {
	pod := func(v string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "vms", Annotations: map[string]string{NetworksAnnotation: v}}}
	}
	for v, want := range map[string]string{
		"":                               "",
		"istio-cni":                      "vms/istio-cni",
		"default/istio-cni":              "default/istio-cni",
		" v2-5-istio-cni@net1 , other/x": "vms/v2-5-istio-cni,other/x",
		`[{"name":"br","namespace":"n2"},{"name":"istio-cni"}]`: "n2/br,vms/istio-cni",
		`[{"name":`: "",
	} {
		if got := strings.Join(PodNetworks(pod(v)), ","); got != want {
			t.Errorf("%q: got %q, want %q", v, got, want)
		}
	}
}

func phase(p kubevirtv1.VirtualMachineInstancePhase) func(*kubevirtv1.VirtualMachineInstance) {
	return func(v *kubevirtv1.VirtualMachineInstance) { v.Status.Phase = p }
}

// optedOut labels the VMI sidecar.istio.io/inject=false.
func optedOut(vmi *kubevirtv1.VirtualMachineInstance) { vmi.Labels[InjectKey] = "false" }

// movedIn: the VMI's last migration, started at start, completed into pod.
func movedIn(pod string, start time.Time) func(*kubevirtv1.VirtualMachineInstance) {
	return func(vmi *kubevirtv1.VirtualMachineInstance) {
		vmi.Status.MigrationState = &kubevirtv1.VirtualMachineInstanceMigrationState{Completed: true, TargetPod: pod,
			StartTimestamp: &metav1.Time{Time: start}}
	}
}

func annotate(k, v string) func(*kubevirtv1.VirtualMachineInstance) {
	return func(vmi *kubevirtv1.VirtualMachineInstance) { vmi.Annotations[k] = v }
}

func inNamespace(ns string) func(*kubevirtv1.VirtualMachineInstance) {
	return func(vmi *kubevirtv1.VirtualMachineInstance) { vmi.Namespace = ns }
}

func noPodNetwork(vmi *kubevirtv1.VirtualMachineInstance) {
	vmi.Spec.Networks = []kubevirtv1.Network{{Name: "sec", NetworkSource: kubevirtv1.NetworkSource{Multus: &kubevirtv1.MultusNetwork{NetworkName: "br"}}}}
	vmi.Spec.Domain.Devices.Interfaces = []kubevirtv1.Interface{{Name: "sec", InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}}}
}

func bridge(vmi *kubevirtv1.VirtualMachineInstance) {
	vmi.Spec.Domain.Devices.Interfaces[0].InterfaceBindingMethod = kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}
}

func passt(vmi *kubevirtv1.VirtualMachineInstance) {
	vmi.Spec.Domain.Devices.Interfaces[0].InterfaceBindingMethod = kubevirtv1.InterfaceBindingMethod{}
	vmi.Spec.Domain.Devices.Interfaces[0].Binding = &kubevirtv1.PluginBinding{Name: "passt"}
}

func standalone(vmi *kubevirtv1.VirtualMachineInstance) { vmi.OwnerReferences = nil }

func deleting(vmi *kubevirtv1.VirtualMachineInstance) {
	now := metav1.Now()
	vmi.DeletionTimestamp = &now
}
