package controllers

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
	vmwebhook "github.com/virtmesh/virtmesh/webhook"
)

func multusAndPod() kubevirtv1.VirtualMachineInstanceSpec {
	return kubevirtv1.VirtualMachineInstanceSpec{
		Networks: []kubevirtv1.Network{
			{Name: "vlan", NetworkSource: kubevirtv1.NetworkSource{Multus: &kubevirtv1.MultusNetwork{NetworkName: "vlan10"}}},
			*kubevirtv1.DefaultPodNetwork(),
		},
		Domain: kubevirtv1.DomainSpec{Devices: kubevirtv1.Devices{
			Interfaces: []kubevirtv1.Interface{
				{Name: "vlan", Ports: []kubevirtv1.Port{{Port: 1}}, InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}},
				{Name: "default", Ports: []kubevirtv1.Port{{Name: "http", Port: 8080}}, InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Masquerade: &kubevirtv1.InterfaceMasquerade{}}},
			},
			Disks: []kubevirtv1.Disk{{Name: "root"}},
		}},
		Volumes: []kubevirtv1.Volume{{Name: "root", VolumeSource: kubevirtv1.VolumeSource{ContainerDisk: &kubevirtv1.ContainerDiskSource{Image: "x"}}}},
	}
}

func TestTrimVMIKeepsWhatMembershipReads(t *testing.T) {
	in := &kubevirtv1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "vms", UID: "u", ResourceVersion: "7",
			Labels: map[string]string{"app": "web", mesh.InjectKey: "true", kubevirtv1.NodeNameLabel: "node01",
				kubevirtv1.MigrationTargetNodeNameLabel: "node02"},
			Annotations: map[string]string{mesh.InjectKey: "true", mesh.ServiceAnnotation: "false", mesh.PortProtocolsAnnotation: "8080=http",
				"kubectl.kubernetes.io/last-applied-configuration": "{...a big blob...}"},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: "a"}}},
		Spec: multusAndPod(),
		Status: kubevirtv1.VirtualMachineInstanceStatus{NodeName: "node01", Phase: kubevirtv1.Running,
			Interfaces: []kubevirtv1.VirtualMachineInstanceNetworkInterface{{Name: "default", IP: "10.0.0.1"}},
			Conditions: []kubevirtv1.VirtualMachineInstanceCondition{{Type: kubevirtv1.VirtualMachineInstanceReady, Status: "True"},
				{Type: kubevirtv1.VirtualMachineInstanceIsMigratable, Status: "False", Reason: "DisksNotLiveMigratable", Message: "long"}}},
	}
	got, err := trimVMI(in)
	if err != nil {
		t.Fatal(err)
	}
	out := got.(*kubevirtv1.VirtualMachineInstance)
	if len(out.Annotations) != 3 || out.ManagedFields != nil || out.Status.Interfaces != nil || len(out.Status.Conditions) != 1 ||
		out.Status.Conditions[0].Message != "" || out.Spec.Volumes != nil || out.Spec.Domain.Devices.Disks != nil {
		t.Fatalf("kept too much: %+v", out)
	}
	// The mesh state reads where it runs and whether it can migrate.
	if out.Status.Phase != kubevirtv1.Running || out.Status.NodeName != "node01" ||
		out.Status.Conditions[0].Type != kubevirtv1.VirtualMachineInstanceIsMigratable || out.Status.Conditions[0].Reason != "DisksNotLiveMigratable" {
		t.Fatalf("lost the status the state reads: %+v", out.Status)
	}
	if out.Labels["app"] != "web" || out.UID != "u" || out.ResourceVersion != "7" || !mesh.OwnedByVM(&out.ObjectMeta) {
		t.Fatalf("lost metadata: %+v", out.ObjectMeta)
	}
	// The labels KubeVirt moves from node to node are not kept: each
	// migration would look like a membership change.
	if len(out.Labels) != 2 || len(in.Labels) != 4 {
		t.Fatalf("labels kept %v (input left with %v): want app and inject only, the input untouched", out.Labels, in.Labels)
	}
	migrated := in.DeepCopy()
	migrated.ResourceVersion, migrated.Labels[kubevirtv1.NodeNameLabel] = "8", "node02"
	delete(migrated.Labels, kubevirtv1.MigrationTargetNodeNameLabel)
	if after, _ := trimVMI(migrated); trimmedChanged(out, after.(*kubevirtv1.VirtualMachineInstance)) {
		t.Fatal("a migration's node labels counted as a membership change")
	}
	if !mesh.HasPodNetwork(&out.Spec) || len(vmiWorkload(out).ports()) != 1 || vmiWorkload(out).ports()[0].Name != "http" {
		t.Fatalf("lost the pod interface: %+v", out.Spec)
	}
	if out.Spec.Domain.Devices.Interfaces[0].Ports != nil {
		t.Fatal("kept a Multus interface's ports")
	}

	// Multus only: still no pod network after trimming.
	multus := in.DeepCopy()
	multus.Spec.Networks = multus.Spec.Networks[:1]
	multus.Spec.Domain.Devices.Interfaces = multus.Spec.Domain.Devices.Interfaces[:1]
	got, _ = trimVMI(multus)
	if mesh.HasPodNetwork(&got.(*kubevirtv1.VirtualMachineInstance).Spec) {
		t.Fatal("a Multus-only VMI gained a pod network")
	}
	// autoattachPodInterface: false survives.
	none := &kubevirtv1.VirtualMachineInstance{}
	none.Spec.Domain.Devices.AutoattachPodInterface = ptr.To(false)
	got, _ = trimVMI(none)
	if mesh.HasPodNetwork(&got.(*kubevirtv1.VirtualMachineInstance).Spec) {
		t.Fatal("autoattachPodInterface: false lost")
	}
}

func TestTrimmedChangedIgnoresStatusOnlyUpdates(t *testing.T) {
	a := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "a", ResourceVersion: "1", Labels: map[string]string{"app": "x"}}}
	b := a.DeepCopy()
	b.ResourceVersion = "2" // what a status update leaves after trimming
	if trimmedChanged(a, b) {
		t.Fatal("a resourceVersion bump counted as a change")
	}
	b.Labels["app"] = "y"
	if !trimmedChanged(a, b) {
		t.Fatal("a label change was missed")
	}
	if a.ResourceVersion != "1" {
		t.Fatal("trimmedChanged modified its input")
	}
	// KubeVirt's VMI has no status subresource: a status write bumps its
	// generation too.
	c := a.DeepCopy()
	c.ResourceVersion, c.Generation, c.Status.Phase = "3", a.Generation+1, kubevirtv1.Running
	if trimmedChanged(a, c) {
		t.Fatal("a status write (with its generation bump) counted as a change")
	}
	if !stateChanged(a, c) {
		t.Fatal("stateChanged missed a status write")
	}
	if endedOrRestarted(a, c) {
		t.Fatal("Running counted as ended")
	}
	d := c.DeepCopy()
	d.ResourceVersion, d.Status.Phase = "4", kubevirtv1.Succeeded
	if !endedOrRestarted(c, d) || !endedOrRestarted(d, c) {
		t.Fatal("a VMI ending (or a final one running again) was missed")
	}
}

// The Service controller must name a VM's Service exactly as the webhook
// labels the VMIs that VM creates.
func TestVMAppMatchesWebhook(t *testing.T) {
	for name, labels := range map[string]map[string]string{
		"no labels":        nil,
		"app label":        {"app": "shop"},
		"kubernetes name":  {mesh.AppNameLabel: "catalog"},
		"both, app wins":   {"app": "shop", mesh.AppNameLabel: "catalog"},
		"unrelated labels": {"kubevirt.io/size": "small"},
	} {
		vm := &kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: "istio-vm", Namespace: "vms", UID: "vm-uid"},
			Spec: kubevirtv1.VirtualMachineSpec{Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: multusAndPod()}}}
		// What virt-controller creates from the VM.
		vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: *vm.Spec.Template.ObjectMeta.DeepCopy(), Spec: *vm.Spec.Template.Spec.DeepCopy()}
		vmi.Name, vmi.Namespace = vm.Name, vm.Namespace
		vmi.OwnerReferences = []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: vm.Name, UID: vm.UID, Controller: ptr.To(true)}}
		vmwebhook.MutateVMI(vmi, vmwebhook.Env{Namespace: vmwebhook.Namespace{Name: "vms", Labels: map[string]string{"istio-injection": "enabled"}}, VM: vm}, mesh.DefaultConfig(), vmwebhook.DefaultConfig())
		if got, want := mesh.VMApp(vm), vmi.Labels["app"]; got != want {
			t.Errorf("%s: controller says app %q, webhook labels the VMI %q", name, got, want)
		}
	}
}

func TestNoConfigMapCacheWithoutReadableIstioNamespaces(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ReadableIstioNamespaces = []string{}
	for obj := range CacheByObject(cfg) {
		if _, ok := obj.(*corev1.ConfigMap); ok {
			t.Fatal("a ConfigMap cache virtmesh may not fill would never sync and stop the manager")
		}
	}
	cfg.ReadableIstioNamespaces = nil // not probed: all of --istio-namespaces
	found := false
	for obj, by := range CacheByObject(cfg) {
		if _, ok := obj.(*corev1.ConfigMap); ok {
			found = len(by.Namespaces) == 1
		}
	}
	if !found {
		t.Fatal("no ConfigMap cache for istio-system")
	}
}

// injectedLauncherPod is a launcher pod as Istio's injector and kubelet
// leave it: the sizes of its parts are those of a real one.
func injectedLauncherPod(i int, native bool) *corev1.Pod {
	always := corev1.ContainerRestartPolicyAlways
	env := make([]corev1.EnvVar, 30)
	for j := range env {
		env[j] = corev1.EnvVar{Name: fmt.Sprintf("ISTIO_META_VARIABLE_%02d", j), Value: strings.Repeat("v", 40)}
	}
	mounts := make([]corev1.VolumeMount, 12)
	volumes := make([]corev1.Volume, 12)
	for j := range mounts {
		mounts[j] = corev1.VolumeMount{Name: fmt.Sprintf("volume-%02d", j), MountPath: fmt.Sprintf("/var/run/kubevirt/volume-%02d", j)}
		volumes[j] = corev1.Volume{Name: mounts[j].Name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
	}
	proxy := corev1.Container{Name: mesh.ProxyContainer, Image: "docker.io/istio/proxyv2:1.30.0", Args: []string{"proxy", "sidecar",
		"--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning", "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"},
		Env: env, VolumeMounts: mounts[:8], ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz/ready"}}}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("virt-launcher-vm-%05d-abcde", i), Namespace: "vms", UID: types.UID(fmt.Sprintf("pod-%05d", i)),
			ResourceVersion: "123456", CreationTimestamp: metav1.Now(),
			Labels: map[string]string{LauncherLabel: LauncherLabelValue, CreatedByLabel: fmt.Sprintf("vmi-%05d", i), "vm.kubevirt.io/name": "vm",
				"app": "vm", "version": "v1", mesh.InjectKey: "true", "security.istio.io/tlsMode": "istio", "service.istio.io/canonical-name": "vm",
				"service.istio.io/canonical-revision": "v1", "kubevirt.io/nodeName": "node01"},
			Annotations: map[string]string{mesh.NetworksAnnotation: "default/istio-cni", mesh.InjectKey: "true",
				"sidecar.istio.io/status":                 `{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["workload-socket","credential-socket","workload-certs","istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert"],"imagePullSecrets":null,"revision":"default"}`,
				"kubevirt.io/domain":                      "vm",
				"post.hook.backup.velero.io/command":      `["/usr/bin/virt-freezer", "--unfreeze", "--name", "vm", "--namespace", "vms"]`,
				"pre.hook.backup.velero.io/command":       `["/usr/bin/virt-freezer", "--freeze", "--name", "vm", "--namespace", "vms"]`,
				"kubectl.kubernetes.io/default-container": "compute", "prometheus.io/path": "/stats/prometheus", "prometheus.io/port": "15020"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstance", Name: "vm", UID: types.UID(fmt.Sprintf("vmi-%05d", i)),
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "virt-controller"}, {Manager: "kubelet"}}},
		Spec: corev1.PodSpec{NodeName: "node01", Volumes: volumes,
			Containers: []corev1.Container{{Name: "compute", Image: "quay.io/kubevirt/virt-launcher:v1.9.0", Command: []string{"/usr/bin/virt-launcher-monitor",
				"--qemu-timeout", "256s", "--name", "vm", "--uid", "vmi", "--namespace", "vms", "--kubevirt-share-dir", "/var/run/kubevirt"},
				Env: env[:5], VolumeMounts: mounts}, proxy},
			InitContainers: []corev1.Container{{Name: "istio-init", Image: proxy.Image, Args: proxy.Args}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.17", HostIP: "192.168.66.101",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: corev1.ContainersReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "compute", Ready: true, Image: "quay.io/kubevirt/virt-launcher:v1.9.0", ContainerID: strings.Repeat("c", 77)},
				{Name: mesh.ProxyContainer, Ready: true, Image: proxy.Image, ContainerID: strings.Repeat("d", 77)}}},
	}
	if native {
		proxy.RestartPolicy = &always
		pod.Spec.Containers = pod.Spec.Containers[:1]
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, proxy)
		pod.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "istio-init"}, pod.Status.ContainerStatuses[1]}
		pod.Status.ContainerStatuses = pod.Status.ContainerStatuses[:1]
	}
	return pod
}

// The trimmed pod gives the same mesh state as the whole one, in every shape.
func TestTrimPodKeepsWhatTheStateReads(t *testing.T) {
	vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "vm", Namespace: "vms", UID: "vmi-00001",
		Annotations: map[string]string{mesh.InjectKey: "true"}, Labels: map[string]string{mesh.InjectKey: "true"}},
		Spec:   multusAndPod(),
		Status: kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Running, NodeName: "node01", ActivePods: map[types.UID]string{"pod-00001": "node01"}}}
	proxyStatus := func(p *corev1.Pod) *corev1.ContainerStatus {
		if len(p.Status.InitContainerStatuses) > 1 {
			return &p.Status.InitContainerStatuses[1]
		}
		return &p.Status.ContainerStatuses[1]
	}
	for name, edit := range map[string]func(*corev1.Pod){
		"ready":           func(*corev1.Pod) {},
		"proxy not ready": func(p *corev1.Pod) { proxyStatus(p).Ready = false },
		"no proxy": func(p *corev1.Pod) {
			p.Spec.Containers, p.Status.ContainerStatuses = p.Spec.Containers[:1], p.Status.ContainerStatuses[:1]
			p.Spec.InitContainers, p.Status.InitContainerStatuses = p.Spec.InitContainers[:1], nil
		},
		"pending on a NAD":                          func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending },
		"created before the VMI asked for the mesh": func(p *corev1.Pod) { delete(p.Annotations, mesh.InjectKey) },
		"inject annotation in capitals":             func(p *corev1.Pod) { p.Annotations[mesh.InjectKey] = "TRUE" },
	} {
		for _, native := range []bool{false, true} {
			full := injectedLauncherPod(1, native)
			edit(full)
			got, err := trimPod(full.DeepCopy())
			if err != nil {
				t.Fatal(err)
			}
			trimmed := got.(*corev1.Pod)
			in := mesh.StateInput{VMI: vmi, NamespaceLabels: map[string]string{mesh.NamespaceInjectionLabel: "enabled"}, MissingNAD: "default/istio-cni"}
			in.Pod = full
			want := mesh.StateOf(in)
			in.Pod = trimmed
			if have := mesh.StateOf(in); have != want {
				t.Errorf("%s (native %v): trimmed %+v, whole %+v", name, native, have, want)
			}
			if mesh.ActivePod(vmi, []*corev1.Pod{trimmed}) != trimmed || strings.Join(mesh.PodNetworks(trimmed), ",") != "default/istio-cni" ||
				podToVMI(context.Background(), trimmed)[0].Name != "vm" {
				t.Errorf("%s: the trimmed pod lost its VMI, node or networks: %+v", name, trimmed)
			}
			if len(trimmed.Spec.Volumes) != 0 || len(trimmed.Labels) != 1 || len(trimmed.Annotations) > 2 || trimmed.ManagedFields != nil ||
				len(trimmed.Spec.Containers)+len(trimmed.Spec.InitContainers) > 1 {
				t.Errorf("%s: kept too much: %+v", name, trimmed)
			}
		}
	}
}

// BenchmarkLauncherPodMemory measures what the cache holds per launcher pod,
// whole and trimmed (heap bytes per pod, reported as B/pod).
func BenchmarkLauncherPodMemory(b *testing.B) {
	for _, how := range []string{"whole", "trimmed", "packed"} {
		b.Run(how, func(b *testing.B) {
			heldPerObject(b, "B/pod", func(i int) any {
				pod := injectedLauncherPod(i, false)
				switch how {
				case "trimmed": // a corev1.Pod, as the manager's cache would hold it
					out, _ := trimPod(pod)
					return out
				case "packed": // as LauncherPods holds it
					out, _ := packPod(pod)
					return out
				}
				return pod
			})
		})
	}
}

// heldPerObject reports, as unit, the heap that 2,000 objects made by keep
// hold once everything else keep allocated is collected.
func heldPerObject(b *testing.B, unit string, keep func(i int) any) {
	const n = 2000
	var per float64
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		kept := make([]any, n)
		for i := range kept {
			kept[i] = keep(i)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		per = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
		runtime.KeepAlive(kept)
	}
	b.ReportMetric(per, unit)
}

// Anyone may label a pod kubevirt.io=virt-launcher: one no VMI controls is
// cached as its name alone, however large its annotations; a real one keeps
// its NADs as short references, a bounded number of them.
func TestTrimPodKeepsLittleOfPodsNoVMIControls(t *testing.T) {
	fake := injectedLauncherPod(1, false)
	fake.OwnerReferences = nil
	fake.Annotations[mesh.NetworksAnnotation] = strings.Repeat("x", 200<<10)
	got, _ := trimPod(fake)
	if p := got.(*corev1.Pod); p.Annotations != nil || p.Labels != nil || len(p.Spec.Containers) != 0 || p.OwnerReferences != nil {
		t.Errorf("a pod no VMI controls kept %+v", p.ObjectMeta)
	}
	real := injectedLauncherPod(2, false)
	var nets []string
	for i := range 40 {
		nets = append(nets, fmt.Sprintf(`{"name":"net-%d","namespace":"vms"}`, i))
	}
	real.Annotations[mesh.NetworksAnnotation] = "[" + strings.Join(nets, ",") + "]"
	got, _ = trimPod(real)
	if refs := mesh.PodNetworks(got.(*corev1.Pod)); len(refs) != maxPodNetworks || refs[0] != "vms/net-0" {
		t.Errorf("kept NADs %v, want the first %d as references", refs, maxPodNetworks)
	}
}

// The cached Service answers every ownership question as the whole one
// does, and keeps only the selector and ports of its spec.
func TestTrimServiceKeepsWhatOwnershipReads(t *testing.T) {
	entry := func(manager string, op metav1.ManagedFieldsOperationType, fields string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: op, FieldsV1: &metav1.FieldsV1{Raw: []byte(fields)}}
	}
	ours := entry(FieldOwner, metav1.ManagedFieldsOperationApply,
		`{"f:metadata":{"f:labels":{"f:`+mesh.ManagedByLabel+`":{}}},"f:spec":{"f:selector":{},"f:ports":{}}}`)
	note := entry("kubectl-annotate", metav1.ManagedFieldsOperationUpdate, `{"f:metadata":{"f:annotations":{"f:example.com/note":{}}}}`)
	edit := entry("kubectl-edit", metav1.ManagedFieldsOperationUpdate, `{"f:spec":{"f:ports":{}}}`)
	for name, fields := range map[string][]metav1.ManagedFieldsEntry{
		"ours only":        {ours},
		"annotated":        {ours, note},
		"ports edited":     {ours, note, edit},
		"someone else's":   {note, edit},
		"status by others": {ours, {Manager: "kcm", Subresource: "status", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:ports":{}}}`)}}},
	} {
		whole := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "vms", ResourceVersion: "7",
			Labels: map[string]string{mesh.ManagedByLabel: mesh.ManagedByValue}, ManagedFields: fields},
			Spec: corev1.ServiceSpec{Selector: map[string]string{mesh.AppLabel: "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}},
				ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"}, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}}}
		got, err := trimService(whole.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		trimmed := got.(*corev1.Service)
		if Virtmeshs(trimmed) != Virtmeshs(whole) || takenOverBy(trimmed) != takenOverBy(whole) || wroteFields(trimmed) != wroteFields(whole) ||
			hasUpdateEntry(trimmed) != hasUpdateEntry(whole) {
			t.Errorf("%s: the trimmed Service answers differently", name)
		}
		if trimmed.Spec.ClusterIP != "" || trimmed.Spec.ClusterIPs != nil || len(trimmed.Spec.Ports) != 1 || trimmed.Spec.Selector[mesh.AppLabel] != "web" {
			t.Errorf("%s: spec kept %+v", name, trimmed.Spec)
		}
		for _, e := range trimmed.ManagedFields {
			if e.Manager == "kubectl-annotate" {
				t.Errorf("%s: kept an entry no question reads", name)
			}
		}
	}
}

// A pod read through the manager's cache, were there one, could never watch
// every pod in the cluster: the cache is narrowed to launcher pods, trimmed.
func TestManagerCacheNarrowsPods(t *testing.T) {
	for obj, by := range CacheByObject(DefaultConfig()) {
		if _, ok := obj.(*corev1.Pod); ok {
			if by.Label == nil || by.Label.String() != LauncherLabel+"="+LauncherLabelValue || by.Transform == nil {
				t.Fatalf("pods cached as %+v", by)
			}
			return
		}
	}
	t.Fatal("the manager's cache would watch every pod")
}
