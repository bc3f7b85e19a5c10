package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/controllers"
	"github.com/virtmesh/virtmesh/internal/cli"
	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/status"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

// No virt-controller or kubelet runs here: the specs play their parts. A VMI
// is created through virtmesh's webhook (as virt-controller would create a
// VM's), owned by a halted VM; its launcher pod object is created by the
// spec with the containers Istio's injector would have added, and its
// status set as kubelet would.

type proxyShape int

const (
	withoutProxy proxyShape = iota
	proxyStarting
	proxyIsReady
)

// vmWithVMI creates a halted VM and a VMI it owns (through the webhook),
// from spec.
func vmWithVMI(ctx context.Context, ns, name string, spec kubevirtv1.VirtualMachineInstanceSpec) *kubevirtv1.VirtualMachineInstance {
	GinkgoHelper()
	vm := testkit.MeshVM(name, "", "", 8080)
	vm.Spec.Template.Spec = spec
	createIn(ctx, ns, vm)
	vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: name, UID: vm.UID,
			Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		Spec: *spec.DeepCopy()}
	Expect(adminClient.Create(ctx, vmi)).To(Succeed())
	return vmi
}

// launcherPodOn plays virt-controller and kubelet: a launcher pod for vmi on
// node, rendered from the VMI as it is, running, with or without an
// istio-proxy (ready or not). It returns the pod.
func launcherPodOn(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, node string, proxy proxyShape) *corev1.Pod {
	GinkgoHelper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "virt-launcher-" + vmi.Name + "-", Namespace: vmi.Namespace,
			Labels: map[string]string{controllers.LauncherLabel: controllers.LauncherLabelValue, controllers.CreatedByLabel: string(vmi.UID),
				"vm.kubevirt.io/name": vmi.Name},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstance", Name: vmi.Name, UID: vmi.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		Spec: corev1.PodSpec{NodeName: node, AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "compute", Image: "quay.io/kubevirt/virt-launcher:v1.9.0"}}},
	}
	// virt-controller copies the VMI's annotations onto its launcher pod.
	pod.Annotations = maps.Clone(vmi.Annotations)
	if proxy != withoutProxy {
		pod.Spec.InitContainers = []corev1.Container{{Name: "istio-init", Image: "docker.io/istio/proxyv2:1.30.0"}}
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: mesh.ProxyContainer, Image: "docker.io/istio/proxyv2:1.30.0"})
	}
	Expect(adminClient.Create(ctx, pod)).To(Succeed())
	DeferCleanup(func(ctx SpecContext) {
		// No kubelet confirms a graceful deletion here.
		Expect(client.IgnoreNotFound(adminClient.Delete(ctx, pod, client.GracePeriodSeconds(0)))).To(Succeed())
	})
	setProxy(ctx, pod, proxy)
	return pod
}

// startOn plays virt-controller and kubelet: a launcher pod for vmi on node,
// running, with or without an istio-proxy (ready or not), made the VMI's
// active pod. It returns the pod.
func startOn(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, node string, proxy proxyShape) *corev1.Pod {
	GinkgoHelper()
	pod := launcherPodOn(ctx, vmi, node, proxy)
	Eventually(func() error {
		if err := adminClient.Get(ctx, client.ObjectKeyFromObject(vmi), vmi); err != nil {
			return err
		}
		vmi.Status.Phase, vmi.Status.NodeName = kubevirtv1.Running, node
		vmi.Status.ActivePods = map[types.UID]string{pod.UID: node}
		// What virt-controller writes too: labels and annotations virtmesh
		// must never remove (its cache leaves them out).
		if vmi.Labels == nil {
			vmi.Labels = map[string]string{}
		}
		if vmi.Annotations == nil {
			vmi.Annotations = map[string]string{}
		}
		vmi.Labels[kubevirtv1.NodeNameLabel] = node
		vmi.Annotations["kubevirt.io/latest-observed-api-version"] = "v1"
		return adminClient.Update(ctx, vmi)
	}).Should(Succeed())
	return pod
}

// setProxy plays kubelet: the pod runs, its proxy ready or not.
func setProxy(ctx context.Context, pod *corev1.Pod, proxy proxyShape) {
	GinkgoHelper()
	pod.Status.Phase = corev1.PodRunning
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "compute", Ready: true, Image: pod.Spec.Containers[0].Image}}
	if proxy != withoutProxy {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses,
			corev1.ContainerStatus{Name: mesh.ProxyContainer, Ready: proxy == proxyIsReady, Image: "docker.io/istio/proxyv2:1.30.0"})
	}
	Expect(adminClient.Status().Update(ctx, pod)).To(Succeed())
}

// stateCount is virtmesh_vmis{state=...}.
func stateCount(state mesh.State) (float64, error) {
	text, err := scrape()
	if err != nil {
		return 0, err
	}
	re := regexp.MustCompile(`(?m)^virtmesh_vmis\{state="` + string(state) + `"\} ([0-9.e+-]+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return 0, fmt.Errorf("no virtmesh_vmis{state=%q} in the metrics", state)
	}
	return strconv.ParseFloat(m[1], 64)
}

// kubectlVirtmesh runs the plugin as the identity cfg names, in namespace ns.
func kubectlVirtmesh(ctx context.Context, as string, ns string, args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	cfg := cp.ImpersonatedConfig(ns, as)
	if as == "" {
		cfg = cp.Config()
	}
	code = cli.Main(ctx, args, cli.Env{Stdout: &out, Stderr: &errOut, RESTConfig: cfg, Namespace: ns})
	return out.String(), errOut.String(), code
}

// statusOf is the VM's row of kubectl virtmesh status -o json, as an admin.
func statusOf(ctx context.Context, ns, name string) func() (status.Row, error) {
	return func() (status.Row, error) {
		out, errOut, code := kubectlVirtmesh(ctx, "", ns, "status", name, "-o", "json")
		if code != cli.ExitOK && code != cli.ExitTrouble {
			return status.Row{}, fmt.Errorf("exit %d: %s", code, errOut)
		}
		var list status.List
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			return status.Row{}, err
		}
		if len(list.Items) != 1 {
			return status.Row{}, fmt.Errorf("%d rows", len(list.Items))
		}
		return list.Items[0], nil
	}
}

func inState(s mesh.State) OmegaMatcher { return HaveField("State", Equal(s)) }

var _ = Describe("Mesh state", func() {
	It("a new VM: Starting while its proxy is not ready, then Meshed, with an Event on the VM and the metric", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		vmi := vmWithVMI(ctx, ns, "web", testkit.VMISpec(8080))
		Expect(vmi.Annotations).To(HaveKeyWithValue(mesh.InjectKey, "true"), "the webhook meshed it")
		Eventually(statusOf(ctx, ns, "web")).WithTimeout(converge).Should(inState(mesh.Pending))

		pod := startOn(ctx, vmi, "node01", proxyStarting)
		Eventually(statusOf(ctx, ns, "web")).WithTimeout(converge).Should(And(inState(mesh.Starting), HaveField("Proxy", "not ready")))
		Eventually(func() (float64, error) { return stateCount(mesh.Starting) }).WithTimeout(converge).Should(BeNumerically(">=", 1))

		setProxy(ctx, pod, proxyIsReady)
		Eventually(statusOf(ctx, ns, "web")).WithTimeout(converge).Should(And(inState(mesh.Meshed), HaveField("Service", "web")))
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "web").WithTimeout(converge).
			Should(ContainElement(controllers.ReasonStateMeshed))
		Eventually(func() (float64, error) { return stateCount(mesh.Meshed) }).WithTimeout(converge).Should(BeNumerically(">=", 1))

		By("a resync writes nothing: one Meshed Event")
		Consistently(func() []string { return eventMessages(ctx, ns, "VirtualMachine", "web", controllers.ReasonStateMeshed) }).
			WithTimeout(2 * time.Second).Should(HaveLen(1))
	})

	It("a VM running before its namespace joined the mesh: NeedsRestart, then Broken after a migration into a proxy, with Events; kubectl virtmesh exits 3", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		vmi := vmWithVMI(ctx, ns, "db", testkit.VMISpec(5432))
		Expect(vmi.Annotations).NotTo(HaveKey(mesh.InjectKey))
		startOn(ctx, vmi, "node01", withoutProxy)
		Eventually(statusOf(ctx, ns, "db")).WithTimeout(converge).Should(inState(mesh.NotInMesh))
		before, err := stateCount(mesh.NeedsRestart)
		Expect(err).NotTo(HaveOccurred())

		By("labelling the namespace (virtmesh told to leave existing VMIs as they are, so it does not pin this one)")
		nsObj := &corev1.Namespace{}
		Expect(adminClient.Get(ctx, client.ObjectKey{Name: ns}, nsObj)).To(Succeed())
		nsObj.Labels["istio-injection"] = "enabled"
		nsObj.Labels[mesh.ExistingVMIsLabel] = string(mesh.ExistingIgnore)
		Expect(adminClient.Update(ctx, nsObj)).To(Succeed())
		Eventually(statusOf(ctx, ns, "db")).WithTimeout(converge).Should(And(inState(mesh.NeedsRestart),
			HaveField("NextStep", ContainSubstring("virtctl restart db"))))
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "db").WithTimeout(converge).
			Should(ContainElement(controllers.ReasonStateNeedsRestart))
		Eventually(func() (float64, error) { return stateCount(mesh.NeedsRestart) }).WithTimeout(converge).Should(BeNumerically(">", before))
		out, _, code := kubectlVirtmesh(ctx, "", ns, "status")
		Expect(code).To(Equal(cli.ExitTrouble), out)
		Expect(out).To(MatchRegexp(`db\s+VM\s+NeedsRestart\s+none`))

		By("live-migrating it: the target pod gets a proxy KubeVirt does not serve")
		startOn(ctx, vmi, "node02", proxyStarting)
		Eventually(statusOf(ctx, ns, "db")).WithTimeout(converge).Should(And(inState(mesh.Broken), HaveField("Node", "node02")))
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "db").WithTimeout(converge).
			Should(ContainElement(controllers.ReasonStateBroken))
	})

	It("NotMeshable, NoProxy and Stopped VMIs; a VMI without a pod network in a mesh namespace gets an Event", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		noPodNet := testkit.VMISpec(8080)
		noPodNet.Networks = []kubevirtv1.Network{{Name: "vlan", NetworkSource: kubevirtv1.NetworkSource{Multus: &kubevirtv1.MultusNetwork{NetworkName: "vlan10"}}}}
		noPodNet.Domain.Devices.Interfaces = []kubevirtv1.Interface{{Name: "vlan", InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}}}
		batch := vmWithVMI(ctx, ns, "batch", noPodNet)
		startOn(ctx, batch, "node01", withoutProxy)
		Eventually(statusOf(ctx, ns, "batch")).WithTimeout(converge).Should(inState(mesh.NotMeshable))
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "batch").WithTimeout(converge).
			Should(ContainElement(controllers.ReasonStateNotMeshable))

		// Meshed by the webhook, but no Istio injector gave its pod a proxy.
		lonely := vmWithVMI(ctx, ns, "lonely", testkit.VMISpec(8080))
		startOn(ctx, lonely, "node01", withoutProxy)
		Eventually(statusOf(ctx, ns, "lonely")).WithTimeout(converge).Should(inState(mesh.NoProxy))
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "lonely").WithTimeout(converge).
			Should(ContainElement(controllers.ReasonStateNoProxy))

		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(lonely), lonely)).To(Succeed())
		lonely.Status.Phase = kubevirtv1.Succeeded
		Expect(adminClient.Update(ctx, lonely)).To(Succeed())
		Eventually(statusOf(ctx, ns, "lonely")).WithTimeout(converge).Should(inState(mesh.Stopped))
	})

	It("Pending on a missing shared NAD (Istio 1.30 with Multus): the reason names it and the fix", func(ctx SpecContext) {
		installInjector(ctx, "istio-1.30-multus", false)
		ns := newLabelledNamespace(ctx, enabledNS)
		vmWithVMI(ctx, ns, "new", testkit.VMISpec(8080))
		// The status command reads the pod only: with no pod yet it cannot
		// know the NAD; check-namespace and the controller's Event can.
		out, _, code := kubectlVirtmesh(ctx, "", ns, "check-namespace", ns)
		Expect(code).To(Equal(cli.ExitTrouble), out)
		Expect(out).To(And(ContainSubstring("default/istio-cni (missing)"), ContainSubstring("provider: multus")))
	})

	It("kubectl virtmesh as a user with only view rights (and KubeVirt's kubevirt.io:view): reads everything it needs; a namespace it may not read is a clear error", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		vmi := vmWithVMI(ctx, ns, "web", testkit.VMISpec(8080))
		startOn(ctx, vmi, "node01", proxyIsReady)
		grantView(ctx, ns, "viewer")

		Eventually(func() (string, error) {
			out, errOut, code := kubectlVirtmesh(ctx, "viewer", ns, "status")
			if code != cli.ExitOK {
				return "", fmt.Errorf("exit %d: %s", code, errOut)
			}
			return out, nil
		}).WithTimeout(converge).Should(MatchRegexp(`web\s+VM\s+Meshed\s+ready\s+web\s+-\s+its launcher pod's istio-proxy is ready`))

		out, errOut, code := kubectlVirtmesh(ctx, "viewer", ns, "check-namespace", ns)
		Expect(code).To(Equal(cli.ExitOK), errOut)
		Expect(out).To(And(ContainSubstring("virtmesh webhook: ? (you may not read it)"), ContainSubstring("VMs here:         1 Meshed")))

		_, errOut, code = kubectlVirtmesh(ctx, "viewer", ns, "status", "-A")
		Expect(code).To(Equal(cli.ExitError))
		Expect(errOut).To(And(HavePrefix("error: you may not list VirtualMachines in all namespaces"), Not(ContainSubstring("goroutine"))))
	})
})

// grantView binds a ServiceAccount name in ns to the view ClusterRole, into
// which kube-controller-manager aggregates KubeVirt's kubevirt.io:view rules
// (installed here as KubeVirt installs them).
func grantView(ctx context.Context, ns, name string) {
	GinkgoHelper()
	kubevirtView := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{GenerateName: "kubevirt.io-view-",
		Labels: map[string]string{"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"kubevirt.io"}, Verbs: []string{"get", "list", "watch"},
			Resources: []string{"virtualmachines", "virtualmachineinstances", "virtualmachineinstancemigrations", "virtualmachineinstancereplicasets"}}}}
	Expect(adminClient.Create(ctx, kubevirtView)).To(Succeed())
	DeferCleanup(func(ctx SpecContext) {
		Expect(client.IgnoreNotFound(adminClient.Delete(ctx, kubevirtView))).To(Succeed())
	})
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}}
	createIn(ctx, ns, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{GenerateName: name + "-"}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "view"}})
}
