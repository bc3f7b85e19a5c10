package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"text/template"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/yaml"

	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/status"
)

// The golden files in testdata/ are kubectl virtmesh's output for the
// cluster below; refresh them with REFRESH_GOLDEN=true go test ./internal/cli/.
var refreshGolden = os.Getenv("REFRESH_GOLDEN") == "true"

type vmShape struct {
	name      string
	ns        string
	annotated bool // the webhook meshed its VMI
	pod       string
	phase     kubevirtv1.VirtualMachineInstancePhase
	noPodNet  bool
	halted    bool
	vmless    bool // a standalone VMI
	networks  string
	// staleMeshPod: the VMI got the inject annotation after its pod was
	// created (the pod lacks it).
	staleMeshPod bool
}

const (
	podNone     = ""
	podNoProxy  = "no proxy"
	podReady    = "ready"
	podNotReady = "not ready"
	podPending  = "pending"
)

// cluster is every state kubectl virtmesh can show, in two namespaces,
// with Istio 1.30 (shared default/istio-cni, which is missing) installed.
func cluster(t *testing.T) []client.Object {
	t.Helper()
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vms", Labels: map[string]string{mesh.NamespaceInjectionLabel: "enabled"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "legacy"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "vms"}},
		&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: status.WebhookConfigurationName}},
	}
	cm, mwc := &corev1.ConfigMap{}, &admissionregistrationv1.MutatingWebhookConfiguration{}
	readFixture(t, "istio-1.30-multus/configmap.yaml", cm)
	readFixture(t, "istio-1.30-multus/mutatingwebhookconfiguration.yaml", mwc)
	objs = append(objs, cm, mwc)
	for _, s := range []vmShape{
		{name: "web", ns: "vms", annotated: true, pod: podReady, networks: "default/istio-cni"},
		{name: "api", ns: "vms", annotated: true, pod: podNotReady, networks: "default/istio-cni"},
		{name: "db", ns: "vms", pod: podNoProxy},
		{name: "erp", ns: "vms", pod: podNotReady},
		{name: "crm", ns: "vms", annotated: true, staleMeshPod: true, pod: podNotReady},
		{name: "new", ns: "vms", annotated: true, pod: podPending, phase: kubevirtv1.Scheduled, networks: "default/istio-cni"},
		{name: "off", ns: "vms", halted: true},
		{name: "batch", ns: "vms", vmless: true, noPodNet: true, pod: podNoProxy},
		{name: "old", ns: "legacy", pod: podNoProxy},
	} {
		objs = append(objs, vmObjects(s)...)
	}
	return objs
}

func vmObjects(s vmShape) []client.Object {
	var out []client.Object
	vmUID := types.UID("vm-" + s.name)
	vmiUID := types.UID("vmi-" + s.name)
	if !s.vmless {
		out = append(out, &kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.ns, UID: vmUID},
			Spec: kubevirtv1.VirtualMachineSpec{RunStrategy: ptr.To(kubevirtv1.RunStrategyAlways),
				Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{}}})
	}
	if s.halted {
		return out
	}
	vmi := &kubevirtv1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.ns, UID: vmiUID, Labels: map[string]string{}, Annotations: map[string]string{}},
		Spec: kubevirtv1.VirtualMachineInstanceSpec{
			Networks: []kubevirtv1.Network{*kubevirtv1.DefaultPodNetwork()},
			Domain: kubevirtv1.DomainSpec{Devices: kubevirtv1.Devices{Interfaces: []kubevirtv1.Interface{{Name: "default",
				InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Masquerade: &kubevirtv1.InterfaceMasquerade{}}}}}},
		},
		Status: kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Running, NodeName: "node01",
			ActivePods: map[types.UID]string{types.UID("pod-" + s.name): "node01"}},
	}
	if s.phase != "" {
		vmi.Status.Phase = s.phase
	}
	if !s.vmless {
		vmi.OwnerReferences = []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: s.name, UID: vmUID, Controller: ptr.To(true)}}
	}
	if s.annotated {
		vmi.Labels[mesh.InjectKey], vmi.Annotations[mesh.InjectKey], vmi.Labels[mesh.AppLabel] = "true", "true", s.name
	}
	if s.noPodNet {
		vmi.Spec.Networks = []kubevirtv1.Network{{Name: "vlan", NetworkSource: kubevirtv1.NetworkSource{Multus: &kubevirtv1.MultusNetwork{NetworkName: "vlan10"}}}}
		vmi.Spec.Domain.Devices.Interfaces = []kubevirtv1.Interface{{Name: "vlan", InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}}}
	}
	out = append(out, vmi)
	if s.pod == podNone {
		return out
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "virt-launcher-" + s.name + "-x7k2p", Namespace: s.ns, UID: types.UID("pod-" + s.name),
			Labels: map[string]string{"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": string(vmiUID)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstance", Name: s.name, UID: vmiUID,
				Controller: ptr.To(true)}}},
		Spec:   corev1.PodSpec{NodeName: "node01", Containers: []corev1.Container{{Name: "compute"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	pod.Annotations = map[string]string{}
	if s.networks != "" {
		pod.Annotations[mesh.NetworksAnnotation] = s.networks
	}
	if s.annotated && !s.staleMeshPod { // virt-controller copies the VMI's annotations
		pod.Annotations[mesh.InjectKey] = "true"
	}
	switch s.pod {
	case podReady, podNotReady, podPending:
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: mesh.ProxyContainer})
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: mesh.ProxyContainer, Ready: s.pod == podReady}}
	}
	if s.pod == podPending {
		pod.Status.Phase, pod.Spec.NodeName = corev1.PodPending, ""
	}
	return append(out, pod)
}

func readFixture(t *testing.T, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("../../tests/testdata/istio-injectors", path))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(strings.Split(string(raw), "\n---")[0]), into); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, c client.Client, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), args, Env{Stdout: &out, Stderr: &errOut, RESTConfig: &rest.Config{Host: "https://example.invalid"},
		Namespace: "vms", NewClient: func(*rest.Config) (client.Client, error) { return c, nil }})
	return out.String(), errOut.String(), code
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if refreshGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (REFRESH_GOLDEN=true go test ./internal/cli/ writes it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the output:\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

func newFake(objs []client.Object, funcs interceptor.Funcs) client.Client {
	return fake.NewClientBuilder().WithScheme(status.NewScheme()).WithObjects(objs...).WithInterceptorFuncs(funcs).Build()
}

func TestGolden(t *testing.T) {
	c := newFake(cluster(t), interceptor.Funcs{})
	for _, tc := range []struct {
		golden string
		args   []string
		code   int
	}{
		{"status.txt", []string{"status"}, ExitTrouble},
		{"status-all-wide.txt", []string{"status", "-A", "-o", "wide"}, ExitTrouble},
		{"status-web.json", []string{"status", "web", "-o", "json"}, ExitOK},
		{"status-web.yaml", []string{"status", "web", "-o", "yaml"}, ExitOK},
		{"status-off.json", []string{"status", "off", "-o", "json"}, ExitOK},
		{"status-legacy.txt", []string{"status", "-n", "legacy"}, ExitOK},
		{"check-vms.txt", []string{"check-namespace", "vms"}, ExitTrouble},
		{"check-legacy.txt", []string{"check-namespace", "legacy"}, ExitOK},
		{"check-legacy.json", []string{"check-namespace", "legacy", "-o", "json"}, ExitOK},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			out, errOut, code := run(t, c, tc.args...)
			if code != tc.code || errOut != "" {
				t.Errorf("exit %d (stderr %q), want %d", code, errOut, tc.code)
			}
			golden(t, tc.golden, out)
		})
	}
}

func TestForbiddenReadsSayWhat(t *testing.T) {
	forbidVMs := interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		if _, ok := list.(*kubevirtv1.VirtualMachineList); ok {
			return apierrors.NewForbidden(schema.GroupResource{Group: "kubevirt.io", Resource: "virtualmachines"}, "", nil)
		}
		return c.List(ctx, list, opts...)
	}}
	out, errOut, code := run(t, newFake(cluster(t), forbidVMs), "status")
	if code != ExitError || out != "" {
		t.Errorf("exit %d, stdout %q; want %d and nothing printed", code, out, ExitError)
	}
	golden(t, "status-forbidden.stderr", errOut)

	// check-namespace shows what it may not read as "?", and goes on.
	forbidAdmission := interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			switch obj.(type) {
			case *admissionregistrationv1.MutatingWebhookConfiguration, *corev1.ConfigMap, *nadv1.NetworkAttachmentDefinition:
				return apierrors.NewForbidden(schema.GroupResource{Resource: "x"}, key.Name, nil)
			}
			return c.Get(ctx, key, obj, opts...)
		},
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if _, ok := list.(*admissionregistrationv1.MutatingWebhookConfigurationList); ok {
				return apierrors.NewForbidden(schema.GroupResource{Resource: "mutatingwebhookconfigurations"}, "", nil)
			}
			return c.List(ctx, list, opts...)
		}}
	out, errOut, code = run(t, newFake(cluster(t), forbidAdmission), "check-namespace", "vms")
	if code != ExitTrouble || errOut != "" {
		t.Errorf("exit %d (stderr %q), want %d: the VMs needing action are still found", code, errOut, ExitTrouble)
	}
	golden(t, "check-vms-view.txt", out)
	// Nothing wrong in what the user may read: not called all clear.
	out, _, code = run(t, newFake(cluster(t), forbidAdmission), "check-namespace", "legacy")
	if code != ExitOK || !strings.Contains(out, "No problems found in what you may read; the lines showing ? could not be checked.") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

// status -A lists the NADs once: no read per NAD (400 namespaces would be
// 400 reads), the same table as reading each; and where the user may not
// list NADs, each is read as before.
func TestStatusListsNADsOnce(t *testing.T) {
	want, _, _ := run(t, newFake(cluster(t), interceptor.Funcs{}), "status", "-A", "-o", "wide")
	present := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Name: "istio-cni", Namespace: "default"}}
	withNAD, _, _ := run(t, newFake(append(cluster(t), present), interceptor.Funcs{}), "status", "-A", "-o", "wide")
	if withNAD == want || strings.Contains(withNAD, "(missing)") {
		t.Fatalf("a NAD that exists is still shown missing:\n%s", withNAD)
	}
	for _, tc := range []struct {
		name      string
		objs      []client.Object
		forbidden bool
		want      string
		gets      int
	}{
		{name: "missing, listed", objs: cluster(t), want: want, gets: 0},
		{name: "present, listed", objs: append(cluster(t), present), want: withNAD, gets: 0},
		{name: "missing, list forbidden", objs: cluster(t), forbidden: true, want: want, gets: 1},
		{name: "present, list forbidden", objs: append(cluster(t), present), forbidden: true, want: withNAD, gets: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gets atomic.Int32
			c := newFake(tc.objs, interceptor.Funcs{
				Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
					if _, ok := obj.(*nadv1.NetworkAttachmentDefinition); ok {
						gets.Add(1)
					}
					return c.Get(ctx, key, obj, opts...)
				},
				List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
					if l, ok := list.(*metav1.PartialObjectMetadataList); ok && tc.forbidden && l.GroupVersionKind().Group == nadv1.SchemeGroupVersion.Group {
						return apierrors.NewForbidden(schema.GroupResource{Group: "k8s.cni.cncf.io", Resource: "network-attachment-definitions"}, "", nil)
					}
					return c.List(ctx, list, opts...)
				}})
			out, errOut, _ := run(t, c, "status", "-A", "-o", "wide")
			if out != tc.want || errOut != "" {
				t.Errorf("stdout:\n%s\nstderr %q; want:\n%s", out, errOut, tc.want)
			}
			if int(gets.Load()) != tc.gets {
				t.Errorf("%d NAD reads, want %d", gets.Load(), tc.gets)
			}
		})
	}
}

// The lists run at once; when several are refused, the error names the
// first in a fixed order, whichever answer came first.
func TestStatusErrorOrderIsFixed(t *testing.T) {
	for range 20 {
		c := newFake(cluster(t), interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			switch list.(type) {
			case *kubevirtv1.VirtualMachineInstanceList:
				time.Sleep(time.Millisecond)
				return apierrors.NewForbidden(schema.GroupResource{Group: "kubevirt.io", Resource: "virtualmachineinstances"}, "", nil)
			case *corev1.PodList:
				return apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", nil)
			}
			return c.List(ctx, list, opts...)
		}})
		_, errOut, code := run(t, c, "status")
		if code != ExitError || !strings.Contains(errOut, "you may not list VirtualMachineInstances") {
			t.Fatalf("exit %d, stderr %q; want the VMIs named (listed before pods)", code, errOut)
		}
	}
}

// The client reads at 50 requests per second (bursts of 300), not
// client-go's 5, unless the configuration says otherwise.
func TestRateLimits(t *testing.T) {
	for _, tc := range []struct {
		qps       float32
		wantQPS   float32
		wantBurst int
	}{{0, 50, 300}, {-1, -1, 0}, {20, 20, 0}} {
		cfg, _, err := restConfig(Env{RESTConfig: &rest.Config{Host: "https://example.invalid", QPS: tc.qps}}, "", "")
		if err != nil || cfg.QPS != tc.wantQPS || cfg.Burst != tc.wantBurst {
			t.Errorf("QPS %v: got QPS %v burst %d (%v), want %v and %d", tc.qps, cfg.QPS, cfg.Burst, err, tc.wantQPS, tc.wantBurst)
		}
	}
}

func TestUsage(t *testing.T) {
	c := newFake(nil, interceptor.Funcs{})
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"status", "-o", "xml"},
		{"status", "-A", "-n", "vms"},
		{"status", "-A", "web"},
		{"check-namespace", "a", "b"},
		{"check-namespace", "vms", "-o", "wide"},
		{"--no-such-flag"},
		{"status", "--ambient-policy", "maybe"},
	} {
		if _, errOut, code := run(t, c, args...); code != ExitUsage || errOut == "" {
			t.Errorf("%q: exit %d, stderr %q; want %d with a message", args, code, errOut, ExitUsage)
		}
	}
	if _, errOut, code := run(t, newFake(cluster(t), interceptor.Funcs{}), "status", "nosuchvm"); code != ExitError ||
		!strings.Contains(errOut, `no VirtualMachine or VirtualMachineInstance "nosuchvm" in namespace vms`) {
		t.Errorf("unknown VM: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code := run(t, c, "check-namespace", "nosuchns"); code != ExitError || !strings.Contains(errOut, `namespace "nosuchns" not found`) {
		t.Errorf("unknown namespace: exit %d, stderr %q", code, errOut)
	}
	// What was found is shown, then what was not, as kubectl get does.
	if out, errOut, code := run(t, newFake(cluster(t), interceptor.Funcs{}), "status", "web", "nosuchvm", "nosuchvm2"); code != ExitError || !strings.Contains(out, "web") ||
		!strings.Contains(errOut, `no VirtualMachine or VirtualMachineInstance "nosuchvm", "nosuchvm2" in namespace vms`) {
		t.Errorf("one known, two unknown: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, errOut, code := run(t, c, "status", "-n", "nosuchns"); code != ExitError || !strings.Contains(errOut, `namespace "nosuchns" not found`) {
		t.Errorf("status in an unknown namespace: exit %d, stderr %q", code, errOut)
	}
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "empty"}}); err != nil {
		t.Fatal(err)
	}
	if out, _, code := run(t, c, "status", "-n", "empty"); code != ExitOK || !strings.Contains(out, "No VirtualMachines") {
		t.Errorf("empty namespace: exit %d, stdout %q", code, out)
	}
}

// .krew.yaml renders, as krew-release-bot renders it, to a krew Plugin whose
// platforms match what make plugin-dist builds.
func TestKrewManifest(t *testing.T) {
	raw, err := os.ReadFile("../../.krew.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := template.New("krew").Funcs(template.FuncMap{"addURIAndSha": func(url, tag string) string {
		return "uri: " + strings.ReplaceAll(url, "{{ .TagName }}", tag) + "\n    sha256: " + strings.Repeat("0", 64)
	}}).Parse(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, map[string]string{"TagName": "v0.3.0"}); err != nil {
		t.Fatal(err)
	}
	var plugin struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			Version          string `json:"version"`
			Homepage         string `json:"homepage"`
			ShortDescription string `json:"shortDescription"`
			Description      string `json:"description"`
			Platforms        []struct {
				Selector struct {
					MatchLabels map[string]string `json:"matchLabels"`
				} `json:"selector"`
				URI    string `json:"uri"`
				SHA256 string `json:"sha256"`
				Bin    string `json:"bin"`
			} `json:"platforms"`
		} `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(out.Bytes(), &plugin); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if plugin.Kind != "Plugin" || plugin.Metadata.Name != "virtmesh" || plugin.Spec.Version != "v0.3.0" || len(plugin.Spec.Platforms) != 5 {
		t.Fatalf("unexpected plugin: %+v", plugin)
	}
	for _, p := range plugin.Spec.Platforms {
		osArch := p.Selector.MatchLabels["os"] + "_" + p.Selector.MatchLabels["arch"]
		if !strings.HasSuffix(p.URI, "/v0.3.0/kubectl-virtmesh_"+osArch+".tar.gz") || !strings.HasPrefix(p.Bin, "kubectl-virtmesh") ||
			!strings.Contains(string(makefile), strings.Replace(osArch, "_", "/", 1)) {
			t.Errorf("platform %s: uri %s, bin %s; make plugin-dist must build it", osArch, p.URI, p.Bin)
		}
	}
}
