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
	"strings"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/app"
	"github.com/virtmesh/virtmesh/internal/controlplane"
	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
	"github.com/virtmesh/virtmesh/internal/testkit/local"
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

func run(binary, root string, verbose bool) error {
	ctx := context.Background()
	if _, err := os.Stat(binary); err != nil {
		return fmt.Errorf("%s: %w (run make build)", binary, err)
	}

	step("Starting a real control plane: etcd, kube-apiserver and kube-controller-manager (Kubernetes v1.34),")
	say("with KubeVirt v1.9.0's CRDs, the Multus NetworkAttachmentDefinition CRD, and virtmesh's webhook configuration")
	say("(manifests/webhook, pointed at this machine with a certificate made for the demo).")
	cp, err := local.StartControlPlane(root, controlplane.Options{})
	defer stopControlPlane(cp)
	if err != nil {
		return err
	}
	admin, err := client.New(cp.Config(), client.Options{Scheme: app.NewScheme()})
	if err != nil {
		return err
	}
	if err := local.InstallRBAC(ctx, admin, root); err != nil {
		return err
	}

	step("Starting virtmesh (%s) as its ServiceAccount, with the RBAC from manifests/rbac.", binary)
	stop, err := startVirtmesh(cp, binary, verbose)
	if err != nil {
		return err
	}
	defer stop()

	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	if err := legacyVM(ctx, admin); err != nil {
		return err
	}
	if err := showStatus(ctx, cp.Config(), "legacy-db", mesh.NotInMesh); err != nil {
		return err
	}

	step("A cluster admin labels namespace %q for Istio injection; that is the only manual step.", ns)
	say("kubectl label namespace %s istio-injection=enabled", ns)
	nsObj := &corev1.Namespace{}
	if err := admin.Get(ctx, client.ObjectKey{Name: ns}, nsObj); err != nil {
		return err
	}
	nsObj.Labels["istio-injection"] = "enabled"
	if err := admin.Update(ctx, nsObj); err != nil {
		return err
	}
	say("legacy-db keeps running outside the mesh, but its next live migration (a node drain) would give it a proxy")
	say("KubeVirt does not serve, and it would drop out of its Service. virtmesh pins it out of the mesh at once,")
	say("so its migrations keep it consistently outside:")
	if err := showPin(ctx, cp.Config(), admin); err != nil {
		return err
	}
	vm, err := createVM(ctx, cp)
	if err != nil {
		return err
	}
	if err := meshProxyStartsThenReady(ctx, cp.Config(), admin, vm); err != nil {
		return err
	}
	if err := showControllersWork(ctx, admin, vm); err != nil {
		return err
	}
	if err := deleteVM(ctx, admin, vm); err != nil {
		return err
	}

	step("Done. Every process the demo started is being stopped.")
	say("To deploy on a real cluster (KubeVirt and Istio installed):")
	say("  kubectl apply -k manifests/default        # virtmesh makes and rotates its own certificate")
	say("  kubectl apply -k manifests/cert-manager   # or: cert-manager issues it")
	say("  kubectl label namespace <ns> istio-injection=enabled")
	say("See README.md, \"Deploy on a cluster\".")
	return nil
}

func stopControlPlane(cp *controlplane.ControlPlane) {
	if cp == nil {
		return
	}
	step("Stopping the control plane.")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	if err := cp.Stop(ctx); err != nil {
		say("stopping it: %v", err)
	}
	say("stopped in %s.", time.Since(start).Round(100*time.Millisecond))
}

// createVM creates seed 004's VM as its owner, and its VMI as virt-controller
// would, and shows what virtmesh told the owner and changed.
func createVM(ctx context.Context, cp *controlplane.ControlPlane) (*kubevirtv1.VirtualMachine, error) {
	vm := seedVM()
	step("A VM owner creates VirtualMachine %q as seed 004 writes its VM, minus every manual Istio step:", vm.Name)
	say("no sidecar.istio.io/inject annotation, no app label, no masquerade binding, no Service.")
	printYAML(vm.Spec.Template)
	ownerCfg := cp.Config()
	w := &testkit.Warnings{}
	ownerCfg.WarningHandler = w
	owner, err := client.New(ownerCfg, client.Options{Scheme: app.NewScheme()})
	if err != nil {
		return nil, err
	}
	if err := owner.Create(ctx, vm); err != nil {
		return nil, err
	}

	step("KubeVirt starts the VM: virt-controller creates its VMI. (This control plane runs no KubeVirt,")
	say("so the demo creates the VMI exactly as virt-controller would: the template, owned by the VM.)")
	written := testkit.VMIFor(vm)
	stored := written.DeepCopy()
	if err := owner.Create(ctx, stored); err != nil {
		return nil, err
	}
	step("What the API server told the creator (admission warnings from virtmesh):")
	for _, m := range w.All() {
		say("Warning: %s", m)
	}
	step("The VMI as written (-) and as stored (+):")
	printDiff(written, stored)
	return vm, nil
}

// showControllersWork waits for the NAD and the Service and shows them.
func showControllersWork(ctx context.Context, admin client.Client, vm *kubevirtv1.VirtualMachine) error {
	step("virtmesh's controllers make the namespace and the VM ready for the mesh:")
	nad := &nadv1.NetworkAttachmentDefinition{}
	if err := waitFor(ctx, func() error { return admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "istio-cni"}, nad) }); err != nil {
		return fmt.Errorf("no istio-cni NetworkAttachmentDefinition: %w", err)
	}
	say("NetworkAttachmentDefinition %s/%s (Multus runs istio-cni for the VM's launcher pod; no Istio injector runs here,", ns, nad.Name)
	say("so --cni-nad=auto keeps one per namespace as KubeVirt's guide says; with Istio 1.19+ it checks the shared default/istio-cni):")
	printYAML(map[string]any{"metadata": map[string]any{"name": nad.Name, "labels": nad.Labels}, "spec": nad.Spec})
	svc := &corev1.Service{}
	if err := waitFor(ctx, func() error { return admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: vm.Name}, svc) }); err != nil {
		return fmt.Errorf("no Service: %w", err)
	}
	say("Service %s/%s (selects app=%s; owned by the VM, so it goes with it):", ns, svc.Name, vm.Name)
	printYAML(map[string]any{"metadata": map[string]any{"name": svc.Name, "labels": svc.Labels, "ownerReferences": svc.OwnerReferences},
		"spec": map[string]any{"selector": svc.Spec.Selector, "ports": svc.Spec.Ports}})
	say("Events on the VM (kubectl describe vm %s -n %s):", vm.Name, ns)
	return printEvents(ctx, admin, "VirtualMachine", vm.Name)
}

// deleteVM deletes the VM and waits for the garbage collector to take its Service.
func deleteVM(ctx context.Context, admin client.Client, vm *kubevirtv1.VirtualMachine) error {
	step("The VM owner deletes the VM; Kubernetes' garbage collector removes its VMI and its Service.")
	say("kubectl delete vm %s -n %s", vm.Name, ns)
	if err := admin.Delete(ctx, vm); err != nil {
		return err
	}
	if err := waitFor(ctx, func() error {
		err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: vm.Name}, &corev1.Service{})
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
	say("Service %s/%s is gone.", ns, vm.Name)
	return nil
}

func startVirtmesh(cp *controlplane.ControlPlane, binary string, verbose bool) (func(), error) {
	host, port, certDir := cp.WebhookServing()
	args := []string{"--webhook-host=" + host, fmt.Sprintf("--webhook-port=%d", port), "--webhook-cert-dir=" + certDir,
		"--leader-elect", "--leader-election-namespace=" + local.Namespace,
		"--metrics-bind-address=0", "--health-probe-bind-address=127.0.0.1:0",
		// No replica behind it to hand admissions to: stop at once.
		"--shutdown-delay=0"}
	say("%s --kubeconfig=<%s/%s> %s", binary, local.Namespace, local.ServiceAccount, strings.Join(args, " "))
	var log bytes.Buffer
	var out io.Writer = &log
	if verbose {
		out = os.Stderr
	}
	p, err := local.Start(cp, binary, args, nil, out)
	if err != nil {
		return nil, err
	}
	stop := func() {
		if err := p.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	if err := local.WaitForWebhook(context.Background(), cp.Config(), p.Exited, time.Minute); err != nil {
		stop()
		return nil, fmt.Errorf("%w\n%s", err, log.String())
	}
	return stop, nil
}

// seedVM is seed 004's VM minus its one manual Istio step in the spec, the
// masquerade binding: its owner writes what KubeVirt defaults to.
func seedVM() *kubevirtv1.VirtualMachine {
	vm := testkit.SeedVM(ns)
	vm.Spec.Template.Spec.Domain.Devices.Interfaces[0].InterfaceBindingMethod = kubevirtv1.InterfaceBindingMethod{}
	return vm
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
