package functional

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

var _ = Describe("A VM in a namespace labelled for Istio injection", Label("mesh"), func() {
	var (
		ns  string
		vm  *kubevirtv1.VirtualMachine
		pod *corev1.Pod
	)

	BeforeEach(func(ctx SpecContext) {
		ns = meshNamespace(ctx)
		vm, pod = startVM(ctx, ns, guestVM("guest", ""))
	}, NodeTimeout(10*time.Minute))

	It("[1] runs with an Istio sidecar, every launcher container ready, though written with no Istio step", func(ctx SpecContext) {
		Expect(hasProxy(pod)).To(BeTrue(), "launcher pod %s has no istio-proxy", pod.Name)
		vmi, err := virtClient.VirtualMachineInstance(ns).Get(ctx, vm.Name, getOptions)
		Expect(err).NotTo(HaveOccurred())
		Expect(vmi.Annotations).To(HaveKeyWithValue(mesh.InjectKey, "true"))
		Expect(vmi.Labels).To(HaveKeyWithValue(mesh.AppLabel, vm.Name))
		Expect(vmi.Spec.Domain.Devices.Interfaces[0].Masquerade).NotTo(BeNil())
	})

	It("[2] references only NetworkAttachmentDefinitions that exist, and has a Service", func(ctx SpecContext) {
		// Whichever NAD the Istio injector appended (kubevirtci's Istio 1.30 with
		// multus: the shared default/istio-cni), the pod started, so it exists.
		nads, err := podNetworks(pod)
		Expect(err).NotTo(HaveOccurred())
		Expect(nads).NotTo(BeEmpty(), "the launcher pod references no Multus network: is istio-cni under Multus?")
		elsewhere := true
		for _, key := range nads {
			Expect(cl.Get(ctx, key, &nadv1.NetworkAttachmentDefinition{})).To(Succeed(), "NetworkAttachmentDefinition %s", key)
			elsewhere = elsewhere && key.Namespace != ns
		}
		if elsewhere { // a shared NAD (Istio 1.19+): --cni-nad=auto made none here
			own := &nadv1.NetworkAttachmentDefinitionList{}
			Expect(cl.List(ctx, own, client.InNamespace(ns), client.MatchingLabels{mesh.ManagedByLabel: mesh.ManagedByValue})).To(Succeed())
			Expect(own.Items).To(BeEmpty(), "virtmesh made a NAD nothing references")
		}
		svc, err := k8s.CoreV1().Services(ns).Get(ctx, vm.Name, getOptions)
		Expect(err).NotTo(HaveOccurred())
		Expect(svc.Spec.Selector).To(Equal(map[string]string{mesh.AppLabel: vm.Name}))
		Expect(svc.Spec.Ports).To(ContainElement(HaveField("Port", int32(guestPort))))
	})

	It("[3] serves a meshed client through its Service", func(ctx SpecContext) {
		c := clientPod(ctx, ns, true)
		Eventually(func() string {
			body, code := curl(ctx, c, serviceURL(ns, vm.Name, ""))
			return code + " " + body
		}).WithContext(ctx).WithTimeout(2 * time.Minute).Should(Equal("200 hello from " + vm.Name))
	})

	It("[4] under STRICT mTLS, refuses a client outside the mesh and serves a meshed one", func(ctx SpecContext) {
		pa := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
			"metadata": map[string]any{"name": "strict", "namespace": ns},
			"spec":     map[string]any{"mtls": map[string]any{"mode": "STRICT"}},
		}}
		Expect(cl.Create(ctx, pa)).To(Succeed())
		outsider := clientPod(ctx, newNamespace(ctx, nil), false)
		insider := clientPod(ctx, ns, true)
		Eventually(func() string {
			_, code := curl(ctx, outsider, serviceURL(ns, vm.Name, ""))
			return code
		}).WithContext(ctx).WithTimeout(2*time.Minute).Should(Equal("000"), "a plaintext client got an HTTP answer")
		Eventually(func() string {
			_, code := curl(ctx, insider, serviceURL(ns, vm.Name, ""))
			return code
		}).WithContext(ctx).WithTimeout(2 * time.Minute).Should(Equal("200"))
	})

	It("[6] is counted in Istio's telemetry under its app label (what Kiali draws)", func(ctx SpecContext) {
		c := clientPod(ctx, ns, true)
		for range 5 {
			curl(ctx, c, serviceURL(ns, vm.Name, ""))
		}
		Eventually(func() string {
			stats, _ := execIn(ctx, pod, "istio-proxy", "pilot-agent", "request", "GET", "stats/prometheus")
			return stats
		}).WithContext(ctx).WithTimeout(2 * time.Minute).Should(
			MatchRegexp(`istio_requests_total\{[^}]*destination_app="` + regexp.QuoteMeta(vm.Name) + `"`))
	})

	It("[7a] stays in the mesh across a restart", func(ctx SpecContext) {
		Expect(virtClient.VirtualMachine(ns).Restart(ctx, vm.Name, &kubevirtv1.RestartOptions{})).To(Succeed())
		Eventually(func(g Gomega) {
			pods, err := launcherPods(ctx, ns, vm.Name)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(pods).NotTo(ContainElement(HaveField("UID", pod.UID)))
		}).WithContext(ctx).WithTimeout(5 * time.Minute).Should(Succeed())
		restarted := waitLauncherReady(ctx, ns, vm.Name)
		Expect(hasProxy(restarted)).To(BeTrue())
	})

	It("[7b] stays in the mesh across a live migration; every container of the source launcher pod ends", Label("migration"), func(ctx SpecContext) {
		needTwoNodes(ctx)
		mig, err := virtClient.VirtualMachineInstanceMigration(ns).Create(ctx, &kubevirtv1.VirtualMachineInstanceMigration{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "migrate-"},
			Spec:       kubevirtv1.VirtualMachineInstanceMigrationSpec{VMIName: vm.Name},
		}, createOptions)
		Expect(err).NotTo(HaveOccurred())
		migrationDone(ctx, ns, mig.Name)
		// As KubeVirt's Istio suite: within 60 s every container of the source
		// pod has terminated (a proxy that does not exit keeps it running),
		// a native sidecar istio-proxy (an init container) too.
		Eventually(func() error {
			p, err := k8s.CoreV1().Pods(ns).Get(ctx, pod.Name, getOptions)
			if err != nil {
				return err
			}
			for _, c := range append(p.Status.ContainerStatuses, p.Status.InitContainerStatuses...) {
				if c.State.Terminated == nil {
					return fmt.Errorf("container %s of source pod %s has not terminated", c.Name, p.Name)
				}
			}
			return nil
		}).WithContext(ctx).WithTimeout(60 * time.Second).WithPolling(time.Second).Should(Succeed())
		target := waitLauncherReady(ctx, ns, vm.Name)
		Expect(target.UID).NotTo(Equal(pod.UID))
		Expect(hasProxy(target)).To(BeTrue())
	})

	It("[8] loses its Service when deleted; the namespace keeps no NAD of virtmesh's when unlabelled", func(ctx SpecContext) {
		Expect(virtClient.VirtualMachine(ns).Delete(ctx, vm.Name, metav1.DeleteOptions{})).To(Succeed())
		Eventually(func() bool {
			_, err := k8s.CoreV1().Services(ns).Get(ctx, vm.Name, getOptions)
			return apierrors.IsNotFound(err)
		}).WithContext(ctx).WithTimeout(3 * time.Minute).Should(BeTrue())
		// The NAD stays while the VMI is still shutting down; then the label goes.
		Eventually(launcherPods).WithArguments(ctx, ns, vm.Name).WithContext(ctx).WithTimeout(3 * time.Minute).Should(BeEmpty())
		patch := []byte(`{"metadata":{"labels":{"istio-injection":null}}}`)
		_, err := k8s.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, patch, metav1.PatchOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() ([]nadv1.NetworkAttachmentDefinition, error) {
			list := &nadv1.NetworkAttachmentDefinitionList{}
			err := cl.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{mesh.ManagedByLabel: mesh.ManagedByValue})
			return list.Items, err
		}).WithContext(ctx).WithTimeout(2 * time.Minute).Should(BeEmpty())
	})
})

var _ = Describe("A VM's guest in the mesh", Label("mesh", "egress"), func() {
	It("[5] resolves and reaches an in-mesh service by its cluster DNS name", func(ctx SpecContext) {
		ns := meshNamespace(ctx)
		_, _ = startVM(ctx, ns, guestVM("server", ""))
		client := guestVM("client", serviceURL(ns, "server", ""))
		_, _ = startVM(ctx, ns, client)
		reader := clientPod(ctx, ns, true)
		Eventually(func() string {
			body, _ := curl(ctx, reader, serviceURL(ns, "client", "outbound.txt"))
			return strings.TrimSpace(body)
		}).WithContext(ctx).WithTimeout(3*time.Minute).Should(Equal("hello from server"),
			"the client VM never fetched the server VM's page through the mesh")
	}, SpecTimeout(20*time.Minute))
})

var _ = Describe("A VM that opts out", Label("mesh"), func() {
	It("[9] stays out of the mesh: no sidecar, no Service", func(ctx SpecContext) {
		ns := meshNamespace(ctx)
		vm := guestVM("private", "")
		vm.Spec.Template.ObjectMeta.Labels = map[string]string{mesh.InjectKey: "false"}
		_, pod := startVM(ctx, ns, vm)
		Expect(hasProxy(pod)).To(BeFalse())
		vmi, err := virtClient.VirtualMachineInstance(ns).Get(ctx, vm.Name, getOptions)
		Expect(err).NotTo(HaveOccurred())
		Expect(vmi.Annotations).NotTo(HaveKey(mesh.MutationsAnnotation))
		Consistently(func() bool {
			_, err := k8s.CoreV1().Services(ns).Get(ctx, vm.Name, getOptions)
			return apierrors.IsNotFound(err)
		}).WithContext(ctx).WithTimeout(20 * time.Second).Should(BeTrue())
	}, SpecTimeout(15*time.Minute))
})

var _ = Describe("With virtmesh down", Serial, Label("disruptive"), func() {
	It("[10] creating a VMI in a mesh namespace fails: no VM is silently left outside the mesh", func(ctx SpecContext) {
		ns := meshNamespace(ctx)
		scale := func(ctx context.Context, replicas int32) {
			GinkgoHelper()
			s, err := k8s.AppsV1().Deployments(*virtmeshNamespace).GetScale(ctx, "virtmesh", getOptions)
			Expect(err).NotTo(HaveOccurred())
			s.Spec.Replicas = replicas
			_, err = k8s.AppsV1().Deployments(*virtmeshNamespace).UpdateScale(ctx, "virtmesh", s, metav1.UpdateOptions{})
			Expect(err).NotTo(HaveOccurred())
		}
		d, err := k8s.AppsV1().Deployments(*virtmeshNamespace).Get(ctx, "virtmesh", getOptions)
		Expect(err).NotTo(HaveOccurred())
		replicas := ptr.Deref(d.Spec.Replicas, 1)
		DeferCleanup(func(ctx SpecContext) {
			scale(ctx, replicas)
			Eventually(func() (int32, error) {
				d, err := k8s.AppsV1().Deployments(*virtmeshNamespace).Get(ctx, "virtmesh", getOptions)
				if err != nil {
					return 0, err
				}
				return d.Status.ReadyReplicas, nil
			}).WithContext(ctx).WithTimeout(3 * time.Minute).Should(Equal(replicas))
		})
		scale(ctx, 0)
		// Until the last replica is gone, one may still answer.
		Eventually(func() ([]corev1.Pod, error) {
			pods, err := k8s.CoreV1().Pods(*virtmeshNamespace).List(ctx, metav1.ListOptions{
				LabelSelector: "app.kubernetes.io/name=virtmesh,app.kubernetes.io/component=manager"})
			if err != nil {
				return nil, err
			}
			return pods.Items, nil
		}).WithContext(ctx).WithTimeout(2 * time.Minute).Should(BeEmpty())

		vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{GenerateName: "refused-"},
			Spec: guestVM("refused", "").Spec.Template.Spec}
		created, err := virtClient.VirtualMachineInstance(ns).Create(ctx, vmi, createOptions)
		if err == nil {
			_ = virtClient.VirtualMachineInstance(ns).Delete(ctx, created.Name, metav1.DeleteOptions{})
		}
		Expect(err).To(MatchError(ContainSubstring("virtmesh")), "a VMI was admitted into a mesh namespace without virtmesh")
	}, SpecTimeout(10*time.Minute))
})
