// Command demo shows virtmesh's main job on a real control plane, on any
// machine: etcd, kube-apiserver and kube-controller-manager built from source
// (hack/controlplane.sh), KubeVirt's CRDs, the shipped RBAC and webhook
// configuration, and bin/virtmesh running as its ServiceAccount. It creates a
// VirtualMachine the way seed 004 writes its VM, minus every manual Istio step,
// and shows what virtmesh did. Run it with `make demo`.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/virtmesh/virtmesh/internal/app"
	"github.com/virtmesh/virtmesh/internal/controlplane"
	"github.com/virtmesh/virtmesh/internal/localrun"
	"github.com/virtmesh/virtmesh/internal/manifests"
	"github.com/virtmesh/virtmesh/internal/mesh"
)

const ns = "demo"

func main() {
	binary := flag.String("virtmesh", "bin/virtmesh", "the manager binary (make build)")
	root := flag.String("repo", ".", "repository root")
	verbose := flag.Bool("v", false, "show virtmesh's own log")
	flag.Parse()
	if err := run(*binary, *root, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "\ndemo failed:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }
func say(format string, args ...any)  { fmt.Printf("    "+format+"\n", args...) }

type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, msg)
}

func run(binary, root string, verbose bool) error {
	ctx := context.Background()
	if _, err := os.Stat(binary); err != nil {
		return fmt.Errorf("%s: %w (run make build)", binary, err)
	}
	webhookObjs, err := manifests.Render(filepath.Join(root, "manifests", "webhook"))
	if err != nil {
		return err
	}
	webhooks, err := manifests.MutatingWebhookConfigurations(webhookObjs)
	if err != nil {
		return err
	}

	step("Starting a real control plane: etcd, kube-apiserver and kube-controller-manager (Kubernetes v1.34),")
	say("with KubeVirt v1.9.0's CRDs, the Multus NetworkAttachmentDefinition CRD, and virtmesh's webhook configuration")
	say("(manifests/webhook, pointed at this machine with a certificate made for the demo).")
	cp, err := controlplane.Start(controlplane.Options{CRDDirs: []string{filepath.Join(root, "tests", "crds")}, MutatingWebhooks: webhooks})
	defer func() {
		if cp != nil {
			step("Stopping the control plane.")
			stopCtx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			start := time.Now()
			if err := cp.Stop(stopCtx); err != nil {
				say("stopping it: %v", err)
			}
			say("stopped in %s.", time.Since(start).Round(100*time.Millisecond))
		}
	}()
	if err != nil {
		return err
	}
	admin, err := client.New(cp.Config(), client.Options{Scheme: app.NewScheme()})
	if err != nil {
		return err
	}
	if err := localrun.InstallRBAC(ctx, admin, root); err != nil {
		return err
	}

	step("Starting virtmesh (%s) as its ServiceAccount, with the RBAC from manifests/rbac.", binary)
	stop, err := startVirtmesh(cp, binary, verbose)
	if err != nil {
		return err
	}
	defer stop()

	step("A cluster admin labels namespace %q for Istio injection; that is the only manual step.", ns)
	say("kubectl create namespace %s && kubectl label namespace %s istio-injection=enabled", ns, ns)
	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"istio-injection": "enabled"}}}); err != nil {
		return err
	}

	vm := seedVM()
	step("A VM owner creates VirtualMachine %q as seed 004 writes its VM, minus every manual Istio step:", vm.Name)
	say("no sidecar.istio.io/inject annotation, no app label, no masquerade binding, no Service.")
	printYAML(vm.Spec.Template)
	ownerCfg := cp.Config()
	w := &warnings{}
	ownerCfg.WarningHandler = w
	owner, err := client.New(ownerCfg, client.Options{Scheme: app.NewScheme()})
	if err != nil {
		return err
	}
	if err := owner.Create(ctx, vm); err != nil {
		return err
	}

	step("KubeVirt starts the VM: virt-controller creates its VMI. (This control plane runs no KubeVirt,")
	say("so the demo creates the VMI exactly as virt-controller would: the template, owned by the VM.)")
	written := vmiFor(vm)
	stored := written.DeepCopy()
	if err := owner.Create(ctx, stored); err != nil {
		return err
	}
	step("What the API server told the creator (admission warnings from virtmesh):")
	for _, m := range w.list {
		say("Warning: %s", m)
	}
	step("The VMI as written (-) and as stored (+):")
	if err := printDiff(written, stored); err != nil {
		return err
	}

	step("virtmesh's controllers make the namespace and the VM ready for the mesh:")
	nad := &nadv1.NetworkAttachmentDefinition{}
	if err := waitFor(ctx, func() error { return admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "istio-cni"}, nad) }); err != nil {
		return fmt.Errorf("no istio-cni NetworkAttachmentDefinition: %w", err)
	}
	say("NetworkAttachmentDefinition %s/%s (Multus runs istio-cni for the VM's launcher pod):", ns, nad.Name)
	printYAML(map[string]any{"metadata": map[string]any{"name": nad.Name, "labels": nad.Labels}, "spec": nad.Spec})
	svc := &corev1.Service{}
	if err := waitFor(ctx, func() error { return admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "istio-vm"}, svc) }); err != nil {
		return fmt.Errorf("no Service: %w", err)
	}
	say("Service %s/%s (selects app=istio-vm; owned by the VM, so it goes with it):", ns, svc.Name)
	printYAML(map[string]any{"metadata": map[string]any{"name": svc.Name, "labels": svc.Labels, "ownerReferences": svc.OwnerReferences},
		"spec": map[string]any{"selector": svc.Spec.Selector, "ports": svc.Spec.Ports}})
	say("Events on the VM (kubectl describe vm istio-vm -n %s):", ns)
	if err := printEvents(ctx, admin, "VirtualMachine", vm.Name); err != nil {
		return err
	}

	step("The VM owner deletes the VM; Kubernetes' garbage collector removes its VMI and its Service.")
	say("kubectl delete vm istio-vm -n %s", ns)
	if err := admin.Delete(ctx, vm); err != nil {
		return err
	}
	if err := waitFor(ctx, func() error {
		err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "istio-vm"}, &corev1.Service{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err == nil {
			return errors.New("the Service is still there")
		}
		return err
	}); err != nil {
		return err
	}
	say("Service %s/istio-vm is gone.", ns)

	step("Done. Every process the demo started is being stopped.")
	say("To deploy on a real cluster (KubeVirt and Istio installed):")
	say("  kubectl apply -k manifests/default        # virtmesh makes and rotates its own certificate")
	say("  kubectl apply -k manifests/cert-manager   # or: cert-manager issues it")
	say("  kubectl label namespace <ns> istio-injection=enabled")
	say("See README.md, \"Deploy on a cluster\".")
	return nil
}

func startVirtmesh(cp *controlplane.ControlPlane, binary string, verbose bool) (func(), error) {
	host, port, certDir := cp.WebhookServing()
	args := []string{"--webhook-host=" + host, fmt.Sprintf("--webhook-port=%d", port), "--webhook-cert-dir=" + certDir,
		"--leader-elect", "--leader-election-namespace=" + localrun.Namespace,
		"--metrics-bind-address=0", "--health-probe-bind-address=127.0.0.1:0"}
	say("%s --kubeconfig=<%s/%s> %s", binary, localrun.Namespace, localrun.ServiceAccount, strings.Join(args, " "))
	var log bytes.Buffer
	var out io.Writer = &log
	if verbose {
		out = os.Stderr
	}
	p, err := localrun.Start(cp, binary, args, out)
	if err != nil {
		return nil, err
	}
	stop := func() {
		if err := p.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	// Ready when the webhook answers: a dry-run VMI in an unlabelled namespace is admitted.
	probe := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "default",
		Labels: map[string]string{mesh.InjectKey: "true"}}}
	c, err := client.New(cp.Config(), client.Options{Scheme: app.NewScheme()})
	if err != nil {
		stop()
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if exited, err := p.Exited(); exited {
			stop()
			return nil, fmt.Errorf("virtmesh exited (%w):\n%s", err, log.String())
		}
		err := c.Create(context.Background(), probe.DeepCopy(), client.DryRunAll)
		if err == nil {
			return stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("virtmesh's webhook did not answer within a minute: %w", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// seedVM is seed 004's istio-vmi as a VirtualMachine, without the manual steps.
func seedVM() *kubevirtv1.VirtualMachine {
	return &kubevirtv1.VirtualMachine{
		TypeMeta:   metav1.TypeMeta{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine"},
		ObjectMeta: metav1.ObjectMeta{Name: "istio-vm", Namespace: ns},
		Spec: kubevirtv1.VirtualMachineSpec{
			RunStrategy: ptr.To(kubevirtv1.RunStrategyAlways),
			Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
				Spec: kubevirtv1.VirtualMachineInstanceSpec{
					Domain: kubevirtv1.DomainSpec{
						Devices: kubevirtv1.Devices{
							Interfaces: []kubevirtv1.Interface{{Name: "default", Ports: []kubevirtv1.Port{{Name: "http", Port: 8080}}}},
							Disks: []kubevirtv1.Disk{
								{Name: "containerdisk", DiskDevice: kubevirtv1.DiskDevice{Disk: &kubevirtv1.DiskTarget{Bus: "virtio"}}},
								{Name: "cloudinitdisk", DiskDevice: kubevirtv1.DiskDevice{Disk: &kubevirtv1.DiskTarget{Bus: "virtio"}}},
							},
						},
						Resources: kubevirtv1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1024M")}},
					},
					Networks:                      []kubevirtv1.Network{*kubevirtv1.DefaultPodNetwork()},
					TerminationGracePeriodSeconds: ptr.To[int64](0),
					Volumes: []kubevirtv1.Volume{
						{Name: "containerdisk", VolumeSource: kubevirtv1.VolumeSource{ContainerDisk: &kubevirtv1.ContainerDiskSource{
							Image: "quay.io/kubevirt/fedora-cloud-container-disk-demo:latest"}}},
						{Name: "cloudinitdisk", VolumeSource: kubevirtv1.VolumeSource{CloudInitNoCloud: &kubevirtv1.CloudInitNoCloudSource{
							UserData: "#cloud-config\npassword: fedora\nchpasswd: { expire: False }\nruncmd:\n" +
								"- dnf install -y nc\n" +
								"- while true ; do sh -c \"nc -lp 8080 -c \\\"echo -e 'HTTP/1.1 200 OK\\n\\nHello'\\\" \" ; done &\n"}}},
					},
				},
			},
		},
	}
}

// vmiFor is the VMI virt-controller creates for a running VM.
func vmiFor(vm *kubevirtv1.VirtualMachine) *kubevirtv1.VirtualMachineInstance {
	vmi := &kubevirtv1.VirtualMachineInstance{
		TypeMeta:   metav1.TypeMeta{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstance"},
		ObjectMeta: *vm.Spec.Template.ObjectMeta.DeepCopy(),
		Spec:       *vm.Spec.Template.Spec.DeepCopy(),
	}
	vmi.Name, vmi.Namespace = vm.Name, vm.Namespace
	if vmi.Labels == nil {
		vmi.Labels = map[string]string{}
	}
	vmi.Labels["kubevirt.io/vm"] = vm.Name
	vmi.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(vm, kubevirtv1.VirtualMachineGroupVersionKind)}
	return vmi
}

func waitFor(ctx context.Context, cond func() error) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func toYAML(v any) []byte {
	b, err := yaml.Marshal(v)
	if err != nil {
		return []byte(err.Error())
	}
	return b
}

func printYAML(v any) {
	for _, l := range strings.Split(strings.TrimRight(string(toYAML(v)), "\n"), "\n") {
		fmt.Println("      " + l)
	}
}

// printDiff shows metadata and spec as written against as stored (fields the
// API server sets itself, such as uid and managedFields, left out).
func printDiff(written, stored *kubevirtv1.VirtualMachineInstance) error {
	view := func(v *kubevirtv1.VirtualMachineInstance) []string {
		meta := map[string]any{"name": v.Name, "labels": v.Labels}
		if len(v.Annotations) > 0 {
			meta["annotations"] = v.Annotations
		}
		m := map[string]any{"metadata": meta, "spec": v.Spec}
		return strings.Split(strings.TrimRight(string(toYAML(m)), "\n"), "\n")
	}
	for _, l := range diff(view(written), view(stored)) {
		fmt.Println("      " + l)
	}
	return nil
}

// diff is a line diff (longest common subsequence), unchanged lines prefixed
// with a space.
func diff(a, b []string) []string {
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			out = append(out, "  "+a[i])
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]):
			out = append(out, "+ "+b[j])
			j++
		default:
			out = append(out, "- "+a[i])
			i++
		}
	}
	return out
}

func printEvents(ctx context.Context, c client.Client, kind, name string) error {
	return waitFor(ctx, func() error {
		events := &corev1.EventList{}
		if err := c.List(ctx, events, client.InNamespace(ns)); err != nil {
			return err
		}
		n := 0
		for _, e := range events.Items {
			if e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name {
				say("  %s %s: %s", e.Type, e.Reason, e.Message)
				n++
			}
		}
		if n == 0 {
			return fmt.Errorf("no events on %s %s yet", kind, name)
		}
		return nil
	})
}
