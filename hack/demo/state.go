package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/cli"
	"github.com/virtmesh/virtmesh/internal/injector"
	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

// No kubelet, virt-controller or Istio runs on the demo's control plane: the
// demo creates launcher pod objects and sets their container statuses as
// they would, and says so each time.

const node = "node01"

// legacyVM creates a VM and its running VMI and launcher pod in the
// namespace before it is labelled: no proxy, no inject annotation.
func legacyVM(ctx context.Context, admin client.Client) error {
	vm := testkit.MeshVM("legacy-db", "", "", 5432)
	vm.Namespace = ns
	step("A VM owner has run VirtualMachine %q in namespace %q since before anyone thought of the mesh.", vm.Name, ns)
	say("(The demo creates its VMI and launcher pod objects as virt-controller and kubelet would: none run here.)")
	if err := admin.Create(ctx, vm); err != nil {
		return err
	}
	vmi := testkit.VMIFor(vm)
	if err := admin.Create(ctx, vmi); err != nil {
		return err
	}
	return startLauncherPod(ctx, admin, vmi, false, false)
}

// startLauncherPod plays virt-controller (the pod, with the istio-proxy
// container Istio's injector would add when withProxy) and kubelet (its
// container statuses), and makes it the VMI's active pod.
func startLauncherPod(ctx context.Context, admin client.Client, vmi *kubevirtv1.VirtualMachineInstance, withProxy, proxyReady bool) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "virt-launcher-" + vmi.Name + "-x7k2p", Namespace: vmi.Namespace,
			Labels: map[string]string{"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": string(vmi.UID)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstance", Name: vmi.Name, UID: vmi.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		Spec: corev1.PodSpec{NodeName: node, AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "compute", Image: "quay.io/kubevirt/virt-launcher:v1.9.0"}}},
	}
	// virt-controller copies the VMI's annotations onto its launcher pod.
	pod.Annotations = map[string]string{}
	for k, v := range vmi.Annotations {
		pod.Annotations[k] = v
	}
	if withProxy {
		// What Istio's injector writes when it references a per-namespace NAD.
		pod.Annotations[mesh.NetworksAnnotation] = "istio-cni"
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: mesh.ProxyContainer, Image: "docker.io/istio/proxyv2:1.30.0"})
	}
	if err := admin.Create(ctx, pod); err != nil {
		return err
	}
	if err := setProxyReady(ctx, admin, pod, proxyReady); err != nil {
		return err
	}
	return waitFor(ctx, func() error {
		if err := admin.Get(ctx, client.ObjectKeyFromObject(vmi), vmi); err != nil {
			return err
		}
		vmi.Status.Phase, vmi.Status.NodeName = kubevirtv1.Running, node
		vmi.Status.ActivePods = map[types.UID]string{pod.UID: node}
		// As virt-controller reports a masquerade VM on shared storage.
		vmi.Status.Conditions = []kubevirtv1.VirtualMachineInstanceCondition{
			{Type: kubevirtv1.VirtualMachineInstanceIsMigratable, Status: corev1.ConditionTrue}}
		return admin.Update(ctx, vmi)
	})
}

// showPin shows the running VMI virtmesh pinned, and what onboarding it
// would do.
func showPin(ctx context.Context, cfg *rest.Config, admin client.Client) error {
	vmi := &kubevirtv1.VirtualMachineInstance{}
	err := waitFor(ctx, func() error {
		if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "legacy-db"}, vmi); err != nil {
			return err
		}
		if vmi.Annotations[mesh.PinnedAnnotation] == "" {
			return fmt.Errorf("legacy-db is not pinned yet")
		}
		return nil
	})
	if err != nil {
		return err
	}
	say("$ kubectl get vmi legacy-db -n %s -o jsonpath='{.metadata.labels.sidecar\\.istio\\.io/inject}'", ns)
	say("%s", vmi.Labels[mesh.InjectKey])
	if err := showStatus(ctx, cfg, "legacy-db", mesh.Pinned); err != nil {
		return err
	}
	say("To bring it in without a restart, its owner (or virtmesh, with virtmesh.io/existing-vmis=onboard on the")
	say("namespace) gives it the mesh metadata and live-migrates it:")
	// virtmesh onboards only where an Istio injector would give the new pod
	// a proxy: stand one in (its webhook fails open; no istiod runs here).
	say("(Istio's sidecar injector stands in here as its MutatingWebhookConfiguration alone: virtmesh onboards a VM only")
	say("where an injector would give its new pod a proxy.)")
	if err := admin.Create(ctx, standInInjector()); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the stand-in Istio injector: %w", err)
	}
	var out, errOut bytes.Buffer
	code := cli.Main(ctx, []string{"onboard", "legacy-db", "-n", ns, "--dry-run"}, cli.Env{Stdout: &out, Stderr: &errOut, RESTConfig: cfg, Namespace: ns})
	if code != cli.ExitOK {
		return fmt.Errorf("kubectl virtmesh onboard --dry-run: exit %d: %s%s", code, out.String(), errOut.String())
	}
	say("$ kubectl virtmesh onboard legacy-db -n %s --dry-run", ns)
	for _, line := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		say("%s", line)
	}
	say("(no migration runs here: this control plane has no KubeVirt)")
	return nil
}

// setProxyReady plays kubelet: the pod runs; its istio-proxy (if any) is
// ready or not.
func setProxyReady(ctx context.Context, admin client.Client, pod *corev1.Pod, ready bool) error {
	pod.Status.Phase = corev1.PodRunning
	pod.Status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses,
			corev1.ContainerStatus{Name: c.Name, Image: c.Image, Ready: c.Name != mesh.ProxyContainer || ready})
	}
	return admin.Status().Update(ctx, pod)
}

// meshProxyStartsThenReady shows the seed VM's launcher pod with a proxy
// that is not ready, then ready.
func meshProxyStartsThenReady(ctx context.Context, cfg *rest.Config, admin client.Client, vm *kubevirtv1.VirtualMachine) error {
	vmi := &kubevirtv1.VirtualMachineInstance{}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: vm.Name}, vmi); err != nil {
		return err
	}
	step("KubeVirt starts its launcher pod; Istio's injector adds istio-proxy (the VMI asks for it). The demo creates")
	say("the pod object and sets its container statuses, as virt-controller, Istio and kubelet would; the proxy is not ready yet:")
	if err := startLauncherPod(ctx, admin, vmi, true, false); err != nil {
		return err
	}
	if err := showStatus(ctx, cfg, vm.Name, mesh.Starting); err != nil {
		return err
	}
	step("The proxy becomes ready (the demo sets it, as kubelet would):")
	pod := &corev1.Pod{}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "virt-launcher-" + vm.Name + "-x7k2p"}, pod); err != nil {
		return err
	}
	if err := setProxyReady(ctx, admin, pod, true); err != nil {
		return err
	}
	return showStatus(ctx, cfg, vm.Name, mesh.Meshed)
}

// showStatus waits until kubectl virtmesh status shows vm in state want,
// then prints the table as the plugin prints it.
func showStatus(ctx context.Context, cfg *rest.Config, vm string, want mesh.State) error {
	var out, errOut bytes.Buffer
	code := 0
	err := waitFor(ctx, func() error {
		out.Reset()
		errOut.Reset()
		code = cli.Main(ctx, []string{"status", "-n", ns}, cli.Env{Stdout: &out, Stderr: &errOut, RESTConfig: cfg, Namespace: ns})
		if code != cli.ExitOK && code != cli.ExitTrouble {
			return fmt.Errorf("kubectl virtmesh status: exit %d: %s", code, errOut.String())
		}
		for _, line := range strings.Split(out.String(), "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[0] == vm && f[2] == string(want) {
				return nil
			}
		}
		return fmt.Errorf("%s is not %s yet:\n%s", vm, want, out.String())
	})
	if err != nil {
		return err
	}
	say("$ kubectl virtmesh status -n %s", ns)
	for _, line := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		say("%s", line)
	}
	say("(exit code %d%s)", code, map[bool]string{true: ": a VM needs action", false: ""}[code == cli.ExitTrouble])
	return nil
}

// standInInjector is Istio's namespace injector as the API server sees it
// (the selectors kubectl virtmesh and virtmesh read), failing open, since
// no istiod answers it here.
func standInInjector() *admissionregistrationv1.MutatingWebhookConfiguration {
	url := "https://127.0.0.1:1/inject"
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector", Labels: map[string]string{injector.WebhookLabel: injector.WebhookLabelValue}},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "namespace.sidecar-injector.istio.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{mesh.NamespaceInjectionLabel: "enabled"}},
			ObjectSelector:          &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: mesh.InjectKey, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}}}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Ignore),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
}
