package functional

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/controllers"
	"github.com/virtmesh/virtmesh/internal/cli"
	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/status"
)

// vmState is the VM's row of `kubectl virtmesh status <vm> -o json`, run as
// the plugin runs (in-process, with the suite's kubeconfig).
func vmState(ctx context.Context, ns, vm string) func() (status.Row, error) {
	return func() (status.Row, error) {
		var out, errOut bytes.Buffer
		code := cli.Main(ctx, []string{"status", vm, "-o", "json"}, cli.Env{Stdout: &out, Stderr: &errOut, RESTConfig: restConfig, Namespace: ns})
		if code != cli.ExitOK && code != cli.ExitTrouble {
			return status.Row{}, fmt.Errorf("kubectl virtmesh status: exit %d: %s", code, errOut.String())
		}
		var list status.List
		if err := json.Unmarshal(out.Bytes(), &list); err != nil || len(list.Items) != 1 {
			return status.Row{}, fmt.Errorf("kubectl virtmesh status: %w: %s", err, out.String())
		}
		return list.Items[0], nil
	}
}

// vmEventsMatching are the Events on VM vm that selector (more field
// selector terms, or "") matches.
func vmEventsMatching(ctx context.Context, ns, vm, selector string) ([]corev1.Event, error) {
	fields := "involvedObject.kind=VirtualMachine,involvedObject.name=" + vm
	if selector != "" {
		fields += "," + selector
	}
	events, err := k8s.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields})
	if err != nil {
		return nil, err
	}
	return events.Items, nil
}

// vmEvents are the reasons of the Events on VM vm.
func vmEvents(ctx context.Context, ns, vm string) ([]string, error) {
	events, err := vmEventsMatching(ctx, ns, vm, "")
	var out []string
	for _, e := range events {
		out = append(out, e.Reason)
	}
	return out, err
}

// vmEventMessages are the messages of the Events of reason on VM vm.
func vmEventMessages(ctx context.Context, ns, vm, reason string) ([]string, error) {
	events, err := vmEventsMatching(ctx, ns, vm, "reason="+reason)
	var out []string
	for _, e := range events {
		out = append(out, e.Message)
	}
	return out, err
}

var _ = Describe("The mesh state of a VM", Label("mesh", "state"), func() {
	It("[14] a meshed VM reports Meshed, with its proxy ready, its Service and its NAD", func(ctx SpecContext) {
		ns := meshNamespace(ctx)
		vm, _ := startVM(ctx, ns, guestVM("stateful", ""))
		Eventually(vmState(ctx, ns, vm.Name)).WithContext(ctx).WithTimeout(2 * time.Minute).Should(And(
			HaveField("State", mesh.Meshed), HaveField("Proxy", "ready"), HaveField("Service", vm.Name),
			HaveField("NAD", Not(ContainSubstring("missing")))))
		Eventually(vmEvents).WithArguments(ctx, ns, vm.Name).WithContext(ctx).WithTimeout(time.Minute).
			Should(ContainElement(controllers.ReasonStateMeshed))
	}, SpecTimeout(15*time.Minute))

	It("[15] a VM created before its namespace was labelled reports NeedsRestart, and Meshed after a restart", func(ctx SpecContext) {
		ns := newNamespace(ctx, map[string]string{
			// Keep virtmesh from pinning it (the existing-VMs feature), so the
			// state shows what labelling alone does.
			"virtmesh.io/existing-vmis": "ignore",
		})
		vm, pod := startVM(ctx, ns, guestVM("veteran", ""))
		Expect(hasProxy(pod)).To(BeFalse())
		Eventually(vmState(ctx, ns, vm.Name)).WithContext(ctx).WithTimeout(time.Minute).Should(HaveField("State", mesh.NotInMesh))

		By("labelling the namespace for Istio injection")
		_, err := k8s.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType,
			[]byte(`{"metadata":{"labels":{"istio-injection":"enabled"}}}`), metav1.PatchOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(vmState(ctx, ns, vm.Name)).WithContext(ctx).WithTimeout(time.Minute).Should(And(
			HaveField("State", mesh.NeedsRestart), HaveField("NextStep", ContainSubstring("virtctl restart "+vm.Name))))
		Eventually(vmEvents).WithArguments(ctx, ns, vm.Name).WithContext(ctx).WithTimeout(time.Minute).
			Should(ContainElement(controllers.ReasonStateNeedsRestart))

		By("restarting it: the webhook meshes the new VMI")
		Expect(virtClient.VirtualMachine(ns).Restart(ctx, vm.Name, &kubevirtv1.RestartOptions{})).To(Succeed())
		Eventually(launcherPods).WithArguments(ctx, ns, vm.Name).WithContext(ctx).WithTimeout(5 * time.Minute).
			ShouldNot(ContainElement(HaveField("UID", pod.UID)))
		restarted := waitLauncherReady(ctx, ns, vm.Name)
		Expect(hasProxy(restarted)).To(BeTrue())
		Eventually(vmState(ctx, ns, vm.Name)).WithContext(ctx).WithTimeout(2 * time.Minute).Should(HaveField("State", mesh.Meshed))
	}, SpecTimeout(20*time.Minute))
})
