package functional

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	kubevirtv1 "kubevirt.io/api/core/v1"
	kvcorev1 "kubevirt.io/client-go/kubevirt/typed/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/injector"
	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

var (
	getOptions    = metav1.GetOptions{}
	createOptions = metav1.CreateOptions{}
)

const (
	guestPort = 8080
	// kubevirtVersion is the KubeVirt the cluster runs (kubevirtci/config.sh):
	// its test images carry the same tag.
	kubevirtVersion = "v1.9.0"
	// clientImage has curl: the utility image KubeVirt's own network jobs
	// run curl in (quay.io, not Docker Hub's anonymous rate limits).
	clientImage = "quay.io/kubevirt/vm-killer:" + kubevirtVersion
	// alpineImage is the container disk KubeVirt's Istio suite boots.
	alpineImage = "quay.io/kubevirt/alpine-with-test-tooling-container-disk:" + kubevirtVersion
	vmStartup   = 8 * time.Minute
)

// newNamespace creates a namespace for one spec, deleted after it.
func newNamespace(ctx context.Context, labels map[string]string) string {
	GinkgoHelper()
	ns, err := k8s.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "virtmesh-e2e-", Labels: labels}}, createOptions)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func(ctx SpecContext) {
		Expect(k8s.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})).To(Succeed())
	})
	return ns.Name
}

// meshNamespace is a namespace labelled for Istio injection: the one manual step.
func meshNamespace(ctx context.Context) string {
	GinkgoHelper()
	return newNamespace(ctx, map[string]string{"istio-injection": "enabled"})
}

// fetchAnnotation on a guestVM (the VM object only) names the URL its guest
// fetches in a loop; startVM starts the loop.
const fetchAnnotation = "e2e.virtmesh.io/fetch"

// guestVM is seed 004's VM as a VM owner writes it, with no Istio step (no
// annotation, no binding, no app label), booting KubeVirt's own Alpine test
// image (the one KubeVirt's Istio suite boots). startVM logs in on its serial
// console and starts an HTTP server on port 8080 serving "hello from <name>"
// (files in /srv) and, if fetch is set, a loop fetching that URL every 2
// seconds into /srv/outbound.txt, so a spec can read what the guest reached.
func guestVM(name, fetch string) *kubevirtv1.VirtualMachine {
	vm := testkit.SeedVM("")
	vm.Name = name
	if fetch != "" {
		vm.Annotations = map[string]string{fetchAnnotation: fetch}
	}
	spec := &vm.Spec.Template.Spec
	// No binding: KubeVirt's default, which virtmesh must turn into masquerade.
	spec.Domain.Devices.Interfaces = []kubevirtv1.Interface{{Name: "default", Ports: []kubevirtv1.Port{{Name: "http", Port: guestPort}}}}
	spec.Domain.Resources.Requests[corev1.ResourceMemory] = resource.MustParse("256Mi")
	// startVM waits for the guest on its console, not for a readiness probe.
	spec.ReadinessProbe = nil
	spec.Volumes[0].ContainerDisk.Image = alpineImage
	// As KubeVirt's Istio suite: the guest is driven over the console.
	spec.Volumes[1].CloudInitNoCloud.UserData = "#cloud-config\nssh_pwauth: true\n"
	return vm
}

// guestCommands are what startVM runs in a guestVM's shell.
func guestCommands(vm *kubevirtv1.VirtualMachine) []string {
	cmds := []string{
		"mkdir -p /srv && cd /srv && echo 'hello from " + vm.Name + "' > index.html",
		fmt.Sprintf("nohup python3 -m http.server %d --bind 0.0.0.0 >/dev/null 2>&1 &", guestPort),
	}
	if fetch := vm.Annotations[fetchAnnotation]; fetch != "" {
		cmds = append(cmds, "nohup sh -c 'while true; do curl -s -m 5 -o /srv/outbound.tmp "+fetch+
			" && mv /srv/outbound.tmp /srv/outbound.txt; sleep 2; done' >/dev/null 2>&1 &")
	}
	return cmds
}

// startVM creates vm in ns and waits until its VMI runs, its launcher pod is
// ready in every container, and the guest serves (see guestVM).
func startVM(ctx context.Context, ns string, vm *kubevirtv1.VirtualMachine) (*kubevirtv1.VirtualMachine, *corev1.Pod) {
	GinkgoHelper()
	created, err := virtClient.VirtualMachine(ns).Create(ctx, vm, createOptions)
	Expect(err).NotTo(HaveOccurred())
	pod := waitLauncherReady(ctx, ns, vm.Name)
	consoleRun(ns, vm.Name, vmStartup, guestCommands(vm)...)
	return created, pod
}

// launcherPods are the virt-launcher pods of the VMI named vmi now, found
// by its UID (kubevirt.io/created-by): KubeVirt's vmi.kubevirt.io/id label
// is a hashed form of names longer than 63 characters, not the name.
// (An error, not a failed assertion: it is read in polls, where a passing
// API error must not fail the spec.)
func launcherPods(ctx context.Context, ns, vmi string) ([]corev1.Pod, error) {
	v, err := virtClient.VirtualMachineInstance(ns).Get(ctx, vmi, getOptions)
	if err != nil {
		return nil, err
	}
	pods, err := k8s.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubevirt.io=virt-launcher,kubevirt.io/created-by=" + string(v.UID)})
	if err != nil {
		return nil, err
	}
	return pods.Items, nil
}

// waitLauncherReady waits for the VMI to run and returns its launcher pod once
// every container in it (istio-proxy included, if any) is ready.
func waitLauncherReady(ctx context.Context, ns, vmi string) *corev1.Pod {
	GinkgoHelper()
	var ready *corev1.Pod
	Eventually(func(g Gomega) {
		v, err := virtClient.VirtualMachineInstance(ns).Get(ctx, vmi, getOptions)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(v.Status.Phase).To(Equal(kubevirtv1.Running))
		var running []corev1.Pod
		pods, err := launcherPods(ctx, ns, vmi)
		g.Expect(err).NotTo(HaveOccurred())
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				running = append(running, p)
			}
		}
		g.Expect(running).To(HaveLen(1))
		for _, c := range running[0].Status.ContainerStatuses {
			g.Expect(c.Ready).To(BeTrue(), "container %s of %s not ready", c.Name, running[0].Name)
		}
		// Istio 1.28+ injects istio-proxy as a native sidecar (an init
		// container that keeps running) on Kubernetes 1.33+.
		if p := mesh.ProxyOf(&running[0]); p.Native {
			g.Expect(p.Ready).To(BeTrue(), "native sidecar istio-proxy of %s not ready", running[0].Name)
		}
		ready = &running[0]
	}).WithContext(ctx).WithTimeout(vmStartup).WithPolling(5 * time.Second).Should(Succeed())
	return ready
}

// hasProxy reports whether Istio injected its sidecar into pod: a container,
// or a native sidecar (Istio 1.28+ on Kubernetes 1.33+, as on kubevirtci),
// read as virtmesh's states read it.
func hasProxy(pod *corev1.Pod) bool {
	return mesh.ProxyOf(pod).Present
}

// consoleBuffer collects serial console output.
type consoleBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *consoleBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *consoleBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// Shell prompts of the Alpine test image's root shell, and its login prompt.
var (
	promptRE = regexp.MustCompile(`# $`)
	loginRE  = regexp.MustCompile(`login: $`)
	statusRE = regexp.MustCompile(`\n(\d+)\r?\n[^\n]*# $`)
)

// consoleRun logs in as root on the VMI's serial console (kubecli), as
// KubeVirt's console.LoginToAlpine does (its Alpine test image has no root
// password), then runs each command, checking it exits 0 (console.RunCommand).
// Login waits up to boot; each command up to a minute.
func consoleRun(ns, vmi string, boot time.Duration, cmds ...string) {
	GinkgoHelper()
	var stream kvcorev1.StreamInterface
	Eventually(func() error {
		var err error
		stream, err = virtClient.VirtualMachineInstance(ns).SerialConsole(vmi, &kvcorev1.SerialConsoleOptions{ConnectionTimeout: 30 * time.Second})
		return err
	}).WithTimeout(2 * time.Minute).WithPolling(5 * time.Second).Should(Succeed())
	out := &consoleBuffer{}
	inR, inW := io.Pipe()
	go func() { _ = stream.Stream(kvcorev1.StreamOptions{In: inR, Out: out}) }()
	defer func() { _ = inW.Close(); _ = stream.AsConn().Close() }()
	send := func(s string) { _, _ = inW.Write([]byte(s)) }
	// tail is what the console printed since mark.
	tail := func(mark int) string { return out.String()[mark:] }
	expect := func(mark int, re *regexp.Regexp, timeout time.Duration, what string) string {
		GinkgoHelper()
		var got string
		Eventually(func() bool { got = tail(mark); return re.MatchString(got) }).WithTimeout(timeout).WithPolling(time.Second).
			Should(BeTrue(), "console of %s/%s: waiting for %s; it printed:\n%s", ns, vmi, what, out.String())
		return got
	}

	// A newline shows the login prompt, or the prompt of a shell already open.
	mark := len(out.String())
	Eventually(func() bool {
		send("\n")
		t := tail(mark)
		return loginRE.MatchString(t) || promptRE.MatchString(t)
	}).WithTimeout(boot).WithPolling(10*time.Second).Should(BeTrue(), "console of %s/%s: no login prompt:\n%s", ns, vmi, out.String())
	if !promptRE.MatchString(tail(mark)) {
		mark = len(out.String())
		send("root\n")
		expect(mark, promptRE, time.Minute, "the root prompt after login")
	}
	// As console.configureConsole: no wrapping of long command lines, and no
	// kernel messages interleaved with the output read back.
	for _, cmd := range append([]string{"stty cols 500 rows 500", "dmesg -n 1"}, cmds...) {
		mark = len(out.String())
		send(cmd + "\n")
		expect(mark, promptRE, time.Minute, "the prompt after "+cmd)
		mark = len(out.String())
		send("echo $?\n")
		got := expect(mark, statusRE, time.Minute, "the exit status of "+cmd)
		Expect(statusRE.FindStringSubmatch(got)[1]).To(Equal("0"), "console of %s/%s: %s failed", ns, vmi, cmd)
	}
}

// clientPod starts a pod with curl in ns, in the mesh or not, and waits until
// it (and its proxy, if any) is ready.
func clientPod(ctx context.Context, ns string, meshed bool) *corev1.Pod {
	GinkgoHelper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "curl-", Labels: map[string]string{
			"app": "curl", mesh.InjectKey: fmt.Sprint(meshed)}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "curl", Image: clientImage, Command: []string{"sleep", "365d"}}},
		},
	}
	created, err := k8s.CoreV1().Pods(ns).Create(ctx, pod, createOptions)
	Expect(err).NotTo(HaveOccurred())
	Eventually(func(g Gomega) {
		p, err := k8s.CoreV1().Pods(ns).Get(ctx, created.Name, getOptions)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(p.Status.ContainerStatuses).NotTo(BeEmpty())
		for _, c := range p.Status.ContainerStatuses {
			g.Expect(c.Ready).To(BeTrue())
		}
		if px := mesh.ProxyOf(p); px.Native {
			g.Expect(px.Ready).To(BeTrue(), "native sidecar istio-proxy of %s not ready", p.Name)
		}
		created = p
	}).WithContext(ctx).WithTimeout(3 * time.Minute).Should(Succeed())
	Expect(hasProxy(created)).To(Equal(meshed))
	return created
}

// curl fetches url from pod and returns the body and HTTP status ("000" when
// no HTTP response came back).
func curl(ctx context.Context, pod *corev1.Pod, url string) (body, code string) {
	GinkgoHelper()
	out, _ := execIn(ctx, pod, "curl", "curl", "-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code}", url)
	out = strings.TrimRight(out, "\n")
	i := strings.LastIndex(out, "\n")
	if i < 0 {
		return "", strings.TrimSpace(out)
	}
	return out[:i], strings.TrimSpace(out[i+1:])
}

// execIn runs a command in a container of pod and returns its stdout; its
// stderr is in the error, if it fails.
func execIn(ctx context.Context, pod *corev1.Pod, container string, cmd ...string) (string, error) {
	req := k8s.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: cmd, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	exec, err := remotecommand.NewSPDYExecutor(restConfig, "POST", req.URL())
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	if err := exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w: %s", strings.Join(cmd, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// serviceURL is the cluster DNS name of a Service on the guest port.
func serviceURL(ns, svc, path string) string {
	return fmt.Sprintf("http://%s.%s.svc.cluster.local:%d/%s", svc, ns, guestPort, path)
}

// podNetworks are the NetworkAttachmentDefinitions a pod's Multus networks
// annotation names, in either of its forms ("ns/name@if, name" or JSON).
func podNetworks(pod *corev1.Pod) ([]client.ObjectKey, error) {
	v := strings.TrimSpace(pod.Annotations[injector.NetworksAnnotation])
	var out []client.ObjectKey
	if strings.HasPrefix(v, "[") {
		var list []struct{ Name, Namespace string }
		if err := json.Unmarshal([]byte(v), &list); err != nil {
			return nil, err
		}
		for _, n := range list {
			ns, name, ok := strings.Cut(n.Name, "/")
			if !ok {
				ns, name = cmp.Or(n.Namespace, pod.Namespace), n.Name
			}
			out = append(out, client.ObjectKey{Namespace: ns, Name: name})
		}
		return out, nil
	}
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		e, _, _ = strings.Cut(e, "@")
		ns, name, ok := strings.Cut(e, "/")
		if !ok {
			ns, name = pod.Namespace, e
		}
		out = append(out, client.ObjectKey{Namespace: ns, Name: name})
	}
	return out, nil
}
