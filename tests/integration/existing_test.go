package integration

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/controllers"
	"github.com/virtmesh/virtmesh/internal/cli"
	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/onboard"
	"github.com/virtmesh/virtmesh/internal/testkit"
	vmwebhook "github.com/virtmesh/virtmesh/webhook"
)

// VMs that were running before their namespace joined the mesh. No
// virt-controller runs here: the specs play its part in a migration (the
// target launcher pod, the migration's phase) after checking what virtmesh
// asked for.

// legacyVM creates, in a namespace not (yet) in the mesh, a VM whose VMI runs
// without a proxy and can live-migrate, as virt-controller reports it.
func legacyVM(ctx context.Context, ns, name string) *kubevirtv1.VirtualMachineInstance {
	GinkgoHelper()
	vmi := vmWithVMI(ctx, ns, name, testkit.VMISpec(8080))
	Expect(vmi.Annotations).NotTo(HaveKey(mesh.InjectKey))
	startOn(ctx, vmi, "node01", withoutProxy)
	Eventually(func() error {
		if err := adminClient.Get(ctx, client.ObjectKeyFromObject(vmi), vmi); err != nil {
			return err
		}
		vmi.Status.Conditions = []kubevirtv1.VirtualMachineInstanceCondition{
			{Type: kubevirtv1.VirtualMachineInstanceIsMigratable, Status: corev1.ConditionTrue}}
		return adminClient.Update(ctx, vmi)
	}).Should(Succeed())
	return vmi
}

// setNamespaceLabels sets (value "") or removes (value "-") labels of ns.
func setNamespaceLabels(ctx context.Context, ns string, labels map[string]string) {
	GinkgoHelper()
	Eventually(func() error {
		obj := &corev1.Namespace{}
		if err := adminClient.Get(ctx, client.ObjectKey{Name: ns}, obj); err != nil {
			return err
		}
		for k, v := range labels {
			if v == "-" {
				delete(obj.Labels, k)
			} else {
				obj.Labels[k] = v
			}
		}
		return adminClient.Update(ctx, obj)
	}).Should(Succeed())
}

func vmiNamed(ctx context.Context, ns, name string) func() (*kubevirtv1.VirtualMachineInstance, error) {
	return func() (*kubevirtv1.VirtualMachineInstance, error) {
		vmi := &kubevirtv1.VirtualMachineInstance{}
		return vmi, adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, vmi)
	}
}

// onboardingMigrations lists virtmesh's onboarding migrations in namespaces.
func onboardingMigrations(ctx context.Context, namespaces ...string) ([]kubevirtv1.VirtualMachineInstanceMigration, error) {
	var out []kubevirtv1.VirtualMachineInstanceMigration
	for _, ns := range namespaces {
		list := &kubevirtv1.VirtualMachineInstanceMigrationList{}
		if err := adminClient.List(ctx, list, client.InNamespace(ns), client.HasLabels{onboard.MigrationLabel}); err != nil {
			return nil, err
		}
		out = append(out, list.Items...)
	}
	return out, nil
}

func unfinished(ms []kubevirtv1.VirtualMachineInstanceMigration) []kubevirtv1.VirtualMachineInstanceMigration {
	var out []kubevirtv1.VirtualMachineInstanceMigration
	for _, m := range ms {
		if m.Status.Phase != kubevirtv1.MigrationSucceeded && m.Status.Phase != kubevirtv1.MigrationFailed {
			out = append(out, m)
		}
	}
	return out
}

// othersDone plays kubelet after a migration handed the VM to active: the
// VMI's other launcher pods (the source) finish.
func othersDone(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, active *corev1.Pod) {
	GinkgoHelper()
	pods := &corev1.PodList{}
	Expect(adminClient.List(ctx, pods, client.InNamespace(vmi.Namespace),
		client.MatchingLabels{controllers.CreatedByLabel: string(vmi.UID)})).To(Succeed())
	for i := range pods.Items {
		if p := &pods.Items[i]; p.UID != active.UID && p.Status.Phase == corev1.PodRunning {
			p.Status.Phase = corev1.PodSucceeded
			Expect(adminClient.Status().Update(ctx, p)).To(Succeed())
		}
	}
}

// startTarget plays virt-controller starting a migration of vmi: a target
// launcher pod on node, rendered from the VMI as it is now, that has not
// taken over (the source stays active).
func startTarget(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, node string, proxy proxyShape) *corev1.Pod {
	GinkgoHelper()
	Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(vmi), vmi)).To(Succeed())
	return launcherPodOn(ctx, vmi, node, proxy)
}

// takeOver plays virt-controller and virt-handler at the end of a migration
// that is not virtmesh's (a node drain's): the VM runs in target now, the
// source pod finishes.
func takeOver(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, target *corev1.Pod) {
	GinkgoHelper()
	handOver(ctx, vmi, target, types.UID("drain-"+target.Name))
	othersDone(ctx, vmi, target)
}

// handOver plays KubeVirt moving the VM into target by migration
// migrationUID, in the steps KubeVirt v1.9 takes, each a separate update of
// the VMI's status: virt-controller's handoff (the migration state names the
// migration and target; the source pod stays active; the start time stands
// for what the source virt-handler records), the target virt-handler's ack
// (the VM runs on target's node now, not yet completed), and its
// finalization (completed). KubeVirt lists the source among the active pods
// until it is deleted; here it leaves at the finalization, and othersDone
// ends it.
func handOver(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, target *corev1.Pod, migrationUID types.UID) {
	GinkgoHelper()
	update := func(change func()) {
		GinkgoHelper()
		Eventually(func() error {
			if err := adminClient.Get(ctx, client.ObjectKeyFromObject(vmi), vmi); err != nil {
				return err
			}
			change()
			return adminClient.Update(ctx, vmi)
		}).Should(Succeed())
	}
	update(func() {
		vmi.Status.MigrationState = &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: migrationUID,
			SourceNode: vmi.Status.NodeName, TargetNode: target.Spec.NodeName, TargetPod: target.Name, StartTimestamp: ptr.To(metav1.Now())}
		if vmi.Status.ActivePods == nil {
			vmi.Status.ActivePods = map[types.UID]string{}
		}
		vmi.Status.ActivePods[target.UID] = target.Spec.NodeName
	})
	update(func() {
		vmi.Status.NodeName = target.Spec.NodeName
		vmi.Status.MigrationState.EndTimestamp = ptr.To(metav1.Now())
	})
	update(func() {
		vmi.Status.MigrationState.Completed = true
		vmi.Status.ActivePods = map[types.UID]string{target.UID: target.Spec.NodeName}
	})
}

// endMigration plays virt-controller: the migration ends in phase; on
// success the VMI now runs in a target pod with a ready istio-proxy.
func endMigration(ctx context.Context, m *kubevirtv1.VirtualMachineInstanceMigration, phase kubevirtv1.VirtualMachineInstanceMigrationPhase) {
	GinkgoHelper()
	if phase == kubevirtv1.MigrationSucceeded {
		vmi := &kubevirtv1.VirtualMachineInstance{}
		Expect(adminClient.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.Spec.VMIName}, vmi)).To(Succeed())
		target := launcherPodOn(ctx, vmi, "node02", proxyIsReady)
		handOver(ctx, vmi, target, m.UID)
		othersDone(ctx, vmi, target)
	}
	Eventually(func() error {
		if err := adminClient.Get(ctx, client.ObjectKeyFromObject(m), m); err != nil {
			return err
		}
		m.Status.Phase = phase
		now := metav1.Now()
		m.Status.PhaseTransitionTimestamps = append(m.Status.PhaseTransitionTimestamps,
			kubevirtv1.VirtualMachineInstanceMigrationPhaseTransitionTimestamp{Phase: phase, PhaseTransitionTimestamp: now})
		if phase == kubevirtv1.MigrationFailed {
			m.Status.MigrationState = &kubevirtv1.VirtualMachineInstanceMigrationState{Failed: true, FailureReason: "target pod unschedulable"}
		} else {
			// virt-controller copies the VMI's migration state.
			m.Status.MigrationState = &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: m.UID, Completed: true, EndTimestamp: &now}
		}
		return adminClient.Status().Update(ctx, m)
	}).Should(Succeed())
}

// endMigrationWithoutProxy plays virt-controller for a migration that
// succeeded a minute ago into a pod no Istio injector gave a proxy.
func endMigrationWithoutProxy(ctx context.Context, m *kubevirtv1.VirtualMachineInstanceMigration) {
	GinkgoHelper()
	vmi := &kubevirtv1.VirtualMachineInstance{}
	Expect(adminClient.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.Spec.VMIName}, vmi)).To(Succeed())
	target := launcherPodOn(ctx, vmi, "node02", withoutProxy)
	handOver(ctx, vmi, target, m.UID)
	othersDone(ctx, vmi, target)
	Eventually(func() error {
		if err := adminClient.Get(ctx, client.ObjectKeyFromObject(m), m); err != nil {
			return err
		}
		m.Status.Phase = kubevirtv1.MigrationSucceeded
		m.Status.MigrationState = &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: m.UID, Completed: true,
			EndTimestamp: &metav1.Time{Time: time.Now().Add(-time.Minute)}}
		return adminClient.Status().Update(ctx, m)
	}).Should(Succeed())
}

// refuseMigrationsIn makes the API server refuse every migration created in
// ns, as KubeVirt's admission does while another migration of the VMI runs.
func refuseMigrationsIn(ctx context.Context, ns string) {
	GinkgoHelper()
	refuseMigrations(ctx, ns, "false")
}

// refuseRealMigrationsIn makes the API server refuse every migration created
// in ns, but accept dry runs: as KubeVirt refuses a migration created just
// after another of the same VMI, which a dry run a moment before passed.
func refuseRealMigrationsIn(ctx context.Context, ns string) {
	GinkgoHelper()
	refuseMigrations(ctx, ns, "request.dryRun == true")
}

func refuseMigrations(ctx context.Context, ns, expression string) {
	GinkgoHelper()
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "refuse-migrations-" + ns},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule: admissionregistrationv1.Rule{APIGroups: []string{"kubevirt.io"}, APIVersions: []string{"v1"},
						Resources: []string{"virtualmachineinstancemigrations"}}}}}},
			Validations: []admissionregistrationv1.Validation{{Expression: expression, Message: "in-flight migration detected"}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: policy.Name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}}},
	}
	for _, o := range []client.Object{policy, binding} {
		Expect(adminClient.Create(ctx, o)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(adminClient.Delete(ctx, o))).To(Succeed()) })
	}
	// The policy takes effect once the API server has loaded it.
	probe := &kubevirtv1.VirtualMachineInstanceMigration{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: ns},
		Spec: kubevirtv1.VirtualMachineInstanceMigrationSpec{VMIName: "none"}}
	Eventually(func() error {
		p := probe.DeepCopy()
		err := adminClient.Create(ctx, p)
		if err == nil { // not loaded yet
			if err := adminClient.Delete(ctx, p); err != nil {
				return err
			}
			return errors.New("the policy is not loaded yet")
		}
		return err
	}).WithTimeout(converge).Should(MatchError(ContainSubstring("in-flight migration detected")))
}

// onboardingCount is virtmesh_onboarding_total{result=...}.
func onboardingCount(result string) (float64, error) {
	text, err := scrape()
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^virtmesh_onboarding_total\{result="` + result + `"\} ([0-9.e+-]+)$`).FindStringSubmatch(text)
	if m == nil {
		return 0, nil // not counted yet
	}
	return strconv.ParseFloat(m[1], 64)
}

func onboardingOf(vmi *kubevirtv1.VirtualMachineInstance) (mesh.OnboardingStatus, error) {
	return mesh.ParseOnboarding(vmi.Annotations[mesh.OnboardingAnnotation])
}

var pinnedVMI = And(
	HaveField("Labels", HaveKeyWithValue(mesh.InjectKey, "false")),
	HaveField("Annotations", HaveKey(mesh.PinnedAnnotation)),
	HaveField("Annotations", Not(HaveKey(mesh.InjectKey))),
)

var _ = Describe("VMs running before their namespace joined the mesh", func() {
	It("pin: labelled inject=false when the namespace joins (never a VMI whose owner chose), unpinned when it leaves", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		legacyVM(ctx, ns, "db")
		// Owners' own choices: out of the mesh, and a label without KubeVirt's annotation.
		optedOut := testkit.VMISpec(8080)
		out := vmWithVMI(ctx, ns, "batch", optedOut)
		Eventually(func() error {
			if err := adminClient.Get(ctx, client.ObjectKeyFromObject(out), out); err != nil {
				return err
			}
			out.Labels = map[string]string{mesh.InjectKey: "false"}
			return adminClient.Update(ctx, out)
		}).Should(Succeed())
		half := vmWithVMI(ctx, ns, "half", testkit.VMISpec(8080))
		Eventually(func() error {
			if err := adminClient.Get(ctx, client.ObjectKeyFromObject(half), half); err != nil {
				return err
			}
			half.Labels = map[string]string{mesh.InjectKey: "true"}
			return adminClient.Update(ctx, half)
		}).Should(Succeed())
		startOn(ctx, half, "node01", withoutProxy)

		By("labelling the namespace for injection: the running VMI is pinned within seconds")
		setNamespaceLabels(ctx, ns, enabledNS)
		Eventually(vmiNamed(ctx, ns, "db")).WithTimeout(converge).Should(pinnedVMI)
		vmi, err := vmiNamed(ctx, ns, "db")()
		Expect(err).NotTo(HaveOccurred())
		Expect(mesh.Decide(ns, enabledNS, vmi.Labels, vmi.Annotations, mesh.DefaultConfig()).InMesh).To(BeFalse(),
			"Istio's injector would still give its next migration target pod a proxy")
		Eventually(statusOf(ctx, ns, "db")).WithTimeout(converge).Should(And(inState(mesh.Pinned),
			HaveField("NextStep", ContainSubstring("kubectl virtmesh onboard db"))))
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "db").WithTimeout(converge).
			Should(ContainElement(controllers.ReasonPinned))
		_, _, code := kubectlVirtmesh(ctx, "", ns, "status", "db")
		Expect(code).To(Equal(cli.ExitOK), "a pinned VM needs no action")

		Consistently(func(g Gomega) {
			o, err := vmiNamed(ctx, ns, "batch")()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(o.Labels).To(HaveKeyWithValue(mesh.InjectKey, "false"))
			g.Expect(o.Annotations).NotTo(HaveKey(mesh.PinnedAnnotation))
			h, err := vmiNamed(ctx, ns, "half")()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(h.Labels).To(HaveKeyWithValue(mesh.InjectKey, "true"))
			g.Expect(h.Annotations).NotTo(HaveKey(mesh.PinnedAnnotation))
		}).WithTimeout(3 * time.Second).Should(Succeed())
		Expect(statusOf(ctx, ns, "half")()).To(inState(mesh.NeedsRestart), "the owner's own half-way value is reported, not changed")

		By("the namespace leaves the mesh: virtmesh's pin goes, nothing else changes (KubeVirt's own labels and annotations stay)")
		setNamespaceLabels(ctx, ns, map[string]string{"istio-injection": "-"})
		Eventually(vmiNamed(ctx, ns, "db")).WithTimeout(converge).Should(And(
			HaveField("Labels", Not(HaveKey(mesh.InjectKey))), HaveField("Annotations", Not(HaveKey(mesh.PinnedAnnotation)))))
		Expect(vmiNamed(ctx, ns, "db")()).To(And(HaveField("Labels", HaveKeyWithValue(kubevirtv1.NodeNameLabel, "node01")),
			HaveField("Annotations", HaveKeyWithValue("kubevirt.io/latest-observed-api-version", "v1"))))
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "db").WithTimeout(converge).
			Should(ContainElement(controllers.ReasonUnpinned))
		Expect(vmiNamed(ctx, ns, "batch")()).To(HaveField("Labels", HaveKeyWithValue(mesh.InjectKey, "false")))
		Expect(vmiNamed(ctx, ns, "half")()).To(HaveField("Labels", HaveKeyWithValue(mesh.InjectKey, "true")))
	})

	It("ignore, by namespace label: nothing is pinned and the VM reports NeedsRestart; a bad label value is reported and the flag's policy applies", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		legacyVM(ctx, ns, "db")
		setNamespaceLabels(ctx, ns, map[string]string{"istio-injection": "enabled", mesh.ExistingVMIsLabel: string(mesh.ExistingIgnore)})
		Eventually(statusOf(ctx, ns, "db")).WithTimeout(converge).Should(inState(mesh.NeedsRestart))
		Consistently(vmiNamed(ctx, ns, "db")).WithTimeout(2 * time.Second).Should(HaveField("Annotations", Not(HaveKey(mesh.PinnedAnnotation))))

		setNamespaceLabels(ctx, ns, map[string]string{mesh.ExistingVMIsLabel: "sometimes"})
		Eventually(eventReasons).WithArguments(ctx, "", "Namespace", ns).WithTimeout(converge).
			Should(ContainElement(controllers.ReasonExistingVMIsLabel))
		Eventually(vmiNamed(ctx, ns, "db")).WithTimeout(converge).Should(pinnedVMI)
	})

	It("onboard: one update gives the VMI the webhook's metadata, then one migration; after it the VM is Meshed, with its Service", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		legacyVM(ctx, ns, "db")
		startedBefore, err := onboardingCount("started")
		Expect(err).NotTo(HaveOccurred())
		setNamespaceLabels(ctx, ns, map[string]string{"istio-injection": "enabled", mesh.ExistingVMIsLabel: string(mesh.ExistingOnboard)})
		By("no Istio injector yet: onboarding would leave the VM without the proxy KubeVirt then expects")
		Eventually(eventMessages).WithArguments(ctx, ns, "VirtualMachine", "db", controllers.ReasonCannotOnboard).WithTimeout(converge).
			Should(ContainElement(ContainSubstring("no Istio injector would give its new pod a proxy")))
		Expect(vmiNamed(ctx, ns, "db")()).To(pinnedVMI)
		Expect(onboardingMigrations(ctx, ns)).To(BeEmpty())
		installStandInInjector(ctx)

		Eventually(onboardingMigrations).WithArguments(ctx, ns).WithTimeout(converge).Should(HaveLen(1))
		ms, err := onboardingMigrations(ctx, ns)
		Expect(err).NotTo(HaveOccurred())
		m := ms[0]
		vmi, err := vmiNamed(ctx, ns, "db")()
		Expect(err).NotTo(HaveOccurred())
		o, err := onboardingOf(vmi)
		Expect(err).NotTo(HaveOccurred())
		Expect(m.Name).To(Equal(o.Migration))
		Expect(onboard.Ours(vmi, m.Name)).To(BeTrue())
		Expect(m.Spec.VMIName).To(Equal("db"))
		Expect(m.Labels).To(HaveKeyWithValue(onboard.MigrationLabel, string(vmi.UID)))
		Expect(vmi.Labels).To(And(HaveKeyWithValue(mesh.InjectKey, "true"), HaveKeyWithValue(mesh.AppLabel, "db")))
		Expect(vmi.Annotations).To(And(HaveKeyWithValue(mesh.InjectKey, "true"),
			HaveKeyWithValue(mesh.RerouteAnnotation, mesh.KubeVirtMasqueradeBridge), Not(HaveKey(mesh.PinnedAnnotation))))
		Expect(statusOf(ctx, ns, "db")()).To(inState(mesh.Onboarding))
		Eventually(onboardingCount).WithArguments("started").Should(BeNumerically(">", startedBefore))
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "db").WithTimeout(converge).
			Should(ContainElement(controllers.ReasonOnboardingStarted))

		By("playing virt-controller: the migration succeeds into a pod with a ready proxy")
		endMigration(ctx, &m, kubevirtv1.MigrationSucceeded)
		Eventually(vmiNamed(ctx, ns, "db")).WithTimeout(converge).Should(HaveField("Annotations", And(
			Not(HaveKey(mesh.OnboardingAnnotation)), HaveKeyWithValue(mesh.InjectKey, "true"))))
		Eventually(statusOf(ctx, ns, "db")).WithTimeout(converge).Should(And(inState(mesh.Meshed), HaveField("Service", "db")))
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "db").WithTimeout(converge).
			Should(ContainElement(controllers.ReasonOnboarded))
		Eventually(onboardingCount).WithArguments("succeeded").Should(BeNumerically(">=", 1))
		Consistently(onboardingMigrations).WithArguments(ctx, ns).WithTimeout(2*time.Second).Should(HaveLen(1), "no second migration")

		By("the owner writes the finished onboarding's annotation back: removed again, counted no second time")
		succeeded, err := onboardingCount("succeeded")
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() error {
			if err := adminClient.Get(ctx, client.ObjectKeyFromObject(vmi), vmi); err != nil {
				return err
			}
			vmi.Annotations[mesh.OnboardingAnnotation] = o.Encode()
			return adminClient.Update(ctx, vmi)
		}).Should(Succeed())
		Eventually(eventMessages).WithArguments(ctx, ns, "VirtualMachine", "db", controllers.ReasonOnboarded).WithTimeout(converge).
			Should(ContainElement(ContainSubstring("without counting it")))
		Expect(vmiNamed(ctx, ns, "db")()).To(HaveField("Annotations", Not(HaveKey(mesh.OnboardingAnnotation))))
		Expect(onboardingCount("succeeded")).To(Equal(succeeded))
	})

	It("onboard: at most --onboarding-concurrency (2) namespaces migrate at once, one VM each; a finished one frees its slot", func(ctx SpecContext) {
		installStandInInjector(ctx) // the new pods get a proxy
		a, b, c := newNamespace(ctx), newNamespace(ctx), newNamespace(ctx)
		for _, v := range []struct{ ns, name string }{{a, "a1"}, {a, "a2"}, {b, "b1"}, {c, "c1"}} {
			vmi := legacyVM(ctx, v.ns, v.name)
			DeferCleanup(func(ctx SpecContext) { // free the slots for later specs
				Expect(client.IgnoreNotFound(adminClient.Delete(ctx, vmi))).To(Succeed())
			})
		}
		for _, ns := range []string{a, b, c} {
			setNamespaceLabels(ctx, ns, map[string]string{"istio-injection": "enabled", mesh.ExistingVMIsLabel: string(mesh.ExistingOnboard)})
		}
		limits := func(g Gomega) []kubevirtv1.VirtualMachineInstanceMigration {
			ms, err := onboardingMigrations(ctx, a, b, c)
			g.Expect(err).NotTo(HaveOccurred())
			running := unfinished(ms)
			g.Expect(len(running)).To(BeNumerically("<=", 2))
			perNS := map[string]int{}
			for _, m := range running {
				perNS[m.Namespace]++
			}
			for ns, n := range perNS {
				g.Expect(n).To(Equal(1), "namespace %s", ns)
			}
			return ms
		}
		Eventually(func(g Gomega) { g.Expect(limits(g)).To(HaveLen(2)) }).WithTimeout(converge).Should(Succeed())
		Consistently(func(g Gomega) { g.Expect(limits(g)).To(HaveLen(2)) }).WithTimeout(3 * time.Second).Should(Succeed())

		By("one finishes: the next starts, within the limits")
		ms, err := onboardingMigrations(ctx, a, b, c)
		Expect(err).NotTo(HaveOccurred())
		endMigration(ctx, &ms[0], kubevirtv1.MigrationSucceeded)
		Eventually(func(g Gomega) { g.Expect(limits(g)).To(HaveLen(3)) }).WithTimeout(converge).Should(Succeed())
		Consistently(func(g Gomega) { g.Expect(unfinished(limits(g))).To(HaveLen(2)) }).WithTimeout(2 * time.Second).Should(Succeed())
	})

	It("onboard: a failed migration is retried after a backoff; after the last attempt the VMI is pinned again and reported", func(ctx SpecContext) {
		installStandInInjector(ctx) // the new pods get a proxy
		ns := newNamespace(ctx)
		legacyVM(ctx, ns, "db")
		setNamespaceLabels(ctx, ns, map[string]string{"istio-injection": "enabled", mesh.ExistingVMIsLabel: string(mesh.ExistingOnboard)})
		for attempt := 1; attempt <= mesh.MaxOnboardingAttempts; attempt++ {
			By(fmt.Sprintf("attempt %d fails", attempt))
			Eventually(onboardingMigrations).WithArguments(ctx, ns).WithTimeout(converge).Should(HaveLen(attempt))
			vmi, err := vmiNamed(ctx, ns, "db")()
			Expect(err).NotTo(HaveOccurred())
			o, err := onboardingOf(vmi)
			Expect(err).NotTo(HaveOccurred())
			Expect(o.Attempt).To(Equal(attempt))
			m := &kubevirtv1.VirtualMachineInstanceMigration{}
			Expect(adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: o.Migration}, m)).To(Succeed())
			endMigration(ctx, m, kubevirtv1.MigrationFailed)
			if attempt < mesh.MaxOnboardingAttempts {
				Eventually(statusOf(ctx, ns, "db")).WithTimeout(converge).Should(And(inState(mesh.Onboarding),
					HaveField("Reason", ContainSubstring("failed: target pod unschedulable"))))
			}
		}
		Eventually(vmiNamed(ctx, ns, "db")).WithTimeout(converge).Should(And(pinnedVMI,
			HaveField("Annotations", Not(HaveKey(mesh.OnboardingAnnotation)))))
		Eventually(statusOf(ctx, ns, "db")).WithTimeout(converge).Should(And(inState(mesh.Pinned),
			HaveField("Reason", ContainSubstring("onboarding it by live migration failed"))))
		// Events are sent after the write they report, from a queue.
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "db").
			Should(ContainElements(controllers.ReasonOnboardingFailed, controllers.ReasonOnboardingAbandoned))
		Eventually(onboardingCount).WithArguments("abandoned").Should(BeNumerically(">=", 1))
		Consistently(onboardingMigrations).WithArguments(ctx, ns).WithTimeout(3*time.Second).
			Should(HaveLen(mesh.MaxOnboardingAttempts), "an abandoned VMI is not onboarded again by itself")
	})

	It("onboard across a restart: a VMI updated but not yet migrating gets its migration, a running one no second", func(ctx SpecContext) {
		installStandInInjector(ctx) // the new pods get a proxy
		ns := newNamespace(ctx)
		vmi := legacyVM(ctx, ns, "db")
		By("stopping virtmesh, then leaving the VMI as a virtmesh stopped between its two writes would")
		Expect(mgr.stop(ctx)).To(Succeed())
		mgr = nil
		DeferCleanup(func() {
			if mgr == nil {
				mgr = startManager(managerConfig())
			}
		})
		setNamespaceLabels(ctx, ns, map[string]string{"istio-injection": "enabled", mesh.ExistingVMIsLabel: string(mesh.ExistingOnboard)})
		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(vmi), vmi)).To(Succeed())
		nsLabels := map[string]string{"istio-injection": "enabled"}
		onboard.Pin(vmi, time.Now())
		// Stopped for a while: a migration that does not exist is not taken
		// for a cancelled one however long ago the attempt started.
		Expect(onboard.Prepare(vmi, vmwebhook.Env{Namespace: vmwebhook.Namespace{Name: ns, Labels: nsLabels}}, mesh.DefaultConfig(), vmwebhook.DefaultConfig(), 1, mesh.OnboardedByController, time.Now().Add(-5*time.Minute))).To(Succeed())
		Expect(adminClient.Update(ctx, vmi)).To(Succeed())
		o, err := onboardingOf(vmi)
		Expect(err).NotTo(HaveOccurred())

		mgr = startManager(managerConfig())
		Eventually(onboardingMigrations).WithArguments(ctx, ns).WithTimeout(converge).Should(
			ConsistOf(HaveField("Name", o.Migration)))

		By("restarting virtmesh while the migration runs")
		Expect(mgr.stop(ctx)).To(Succeed())
		mgr = startManager(managerConfig())
		Consistently(onboardingMigrations).WithArguments(ctx, ns).WithTimeout(3 * time.Second).Should(HaveLen(1))
		ms, err := onboardingMigrations(ctx, ns)
		Expect(err).NotTo(HaveOccurred())
		endMigration(ctx, &ms[0], kubevirtv1.MigrationSucceeded)
		Eventually(statusOf(ctx, ns, "db")).WithTimeout(converge).Should(inState(mesh.Meshed))
	})

	It("onboard: an admin who cancels the migration (virtctl migrate-cancel deletes it) is not overruled: a failed attempt each time, then pinned again", func(ctx SpecContext) {
		installStandInInjector(ctx) // the new pods get a proxy
		ns := newNamespace(ctx)
		legacyVM(ctx, ns, "db")
		setNamespaceLabels(ctx, ns, map[string]string{"istio-injection": "enabled", mesh.ExistingVMIsLabel: string(mesh.ExistingOnboard)})
		var cancelled []string
		for attempt := 1; attempt <= mesh.MaxOnboardingAttempts; attempt++ {
			By(fmt.Sprintf("cancelling attempt %d", attempt))
			var m kubevirtv1.VirtualMachineInstanceMigration
			Eventually(func(g Gomega) {
				ms, err := onboardingMigrations(ctx, ns)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(ms).To(HaveLen(1))
				m = ms[0]
			}).WithTimeout(converge).Should(Succeed())
			Expect(cancelled).NotTo(ContainElement(m.Name), "a cancelled migration is never created again")
			vmi, err := vmiNamed(ctx, ns, "db")()
			Expect(err).NotTo(HaveOccurred())
			o, err := onboardingOf(vmi)
			Expect(err).NotTo(HaveOccurred())
			Expect(o.Attempt).To(Equal(attempt))
			Expect(adminClient.Delete(ctx, &m)).To(Succeed())
			cancelled = append(cancelled, m.Name)
			if attempt < mesh.MaxOnboardingAttempts {
				Eventually(func(g Gomega) {
					vmi, err := vmiNamed(ctx, ns, "db")()
					g.Expect(err).NotTo(HaveOccurred())
					o, err := onboardingOf(vmi)
					g.Expect(err).NotTo(HaveOccurred())
					g.Expect(o.Attempt).To(Equal(attempt))
					g.Expect(o.LastFailure).To(ContainSubstring("deleted before it ended"))
				}).WithTimeout(converge).Should(Succeed())
			}
		}
		Eventually(vmiNamed(ctx, ns, "db")).WithTimeout(converge).Should(And(pinnedVMI,
			HaveField("Annotations", Not(HaveKey(mesh.OnboardingAnnotation)))))
		Eventually(eventMessages).WithArguments(ctx, ns, "VirtualMachine", "db", controllers.ReasonOnboardingFailed).Should(ContainElement(
			And(ContainSubstring("deleted before it ended"), ContainSubstring(mesh.ExistingVMIsLabel+"=pin"))))
		Consistently(onboardingMigrations).WithArguments(ctx, ns).WithTimeout(3 * time.Second).Should(BeEmpty())
	})

	It("onboard across a failover while KubeVirt keeps the migrations queued (a drain): they keep their slots, however long they wait", func(ctx SpecContext) {
		installStandInInjector(ctx) // the new pods get a proxy
		a, b, c := newNamespace(ctx), newNamespace(ctx), newNamespace(ctx)
		for _, v := range []struct{ ns, name string }{{a, "a1"}, {b, "b1"}, {c, "c1"}} {
			vmi := legacyVM(ctx, v.ns, v.name)
			DeferCleanup(func(ctx SpecContext) { // free the slots for later specs
				Expect(client.IgnoreNotFound(adminClient.Delete(ctx, vmi))).To(Succeed())
			})
		}
		for _, ns := range []string{a, b} {
			setNamespaceLabels(ctx, ns, map[string]string{"istio-injection": "enabled", mesh.ExistingVMIsLabel: string(mesh.ExistingOnboard)})
		}
		Eventually(onboardingMigrations).WithArguments(ctx, a, b).WithTimeout(converge).Should(HaveLen(2))
		By("the migrations have waited in KubeVirt's queue for an hour (their attempts' start moved back), then virtmesh fails over")
		Expect(mgr.stop(ctx)).To(Succeed())
		mgr = nil
		DeferCleanup(func() {
			if mgr == nil {
				mgr = startManager(managerConfig())
			}
		})
		for _, k := range []struct{ ns, name string }{{a, "a1"}, {b, "b1"}} {
			Eventually(func() error {
				vmi, err := vmiNamed(ctx, k.ns, k.name)()
				if err != nil {
					return err
				}
				o, err := onboardingOf(vmi)
				if err != nil {
					return err
				}
				o.Started = metav1.NewTime(time.Now().Add(-time.Hour).UTC().Truncate(time.Second))
				vmi.Annotations[mesh.OnboardingAnnotation] = o.Encode()
				return adminClient.Update(ctx, vmi)
			}).Should(Succeed())
		}
		setNamespaceLabels(ctx, c, map[string]string{"istio-injection": "enabled", mesh.ExistingVMIsLabel: string(mesh.ExistingOnboard)})
		mgr = startManager(managerConfig())
		Eventually(func(g Gomega) {
			reasons, err := eventReasons(ctx, c, "VirtualMachine", "c1")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(reasons).To(ContainElement(controllers.ReasonOnboardingQueued))
		}).WithTimeout(converge).Should(Succeed())
		Consistently(func(g Gomega) {
			ms, err := onboardingMigrations(ctx, a, b, c)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(unfinished(ms)).To(HaveLen(2), "--onboarding-concurrency=2")
		}).WithTimeout(5 * time.Second).Should(Succeed())
	})

	It("onboard: a drain's migration whose target pod predates the update moves the VM after it: Broken (exit 3), and the Warning of a pin after refused attempts says so", func(ctx SpecContext) {
		installStandInInjector(ctx) // the new pods get a proxy
		ns := newNamespace(ctx)
		vmi := legacyVM(ctx, ns, "db")
		Expect(mgr.stop(ctx)).To(Succeed())
		mgr = nil
		DeferCleanup(func() {
			if mgr == nil {
				mgr = startManager(managerConfig())
			}
		})
		setNamespaceLabels(ctx, ns, map[string]string{"istio-injection": "enabled", mesh.ExistingVMIsLabel: string(mesh.ExistingOnboard)})
		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(vmi), vmi)).To(Succeed())
		onboard.Pin(vmi, time.Now())
		Expect(adminClient.Update(ctx, vmi)).To(Succeed())
		By("a drain's target pod is rendered from the pinned VMI (no proxy), then virtmesh's onboarding update lands, then the hand-off")
		target := startTarget(ctx, vmi, "node03", withoutProxy)
		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(vmi), vmi)).To(Succeed())
		Expect(onboard.Prepare(vmi, vmwebhook.Env{Namespace: vmwebhook.Namespace{Name: ns, Labels: map[string]string{"istio-injection": "enabled"}}},
			mesh.DefaultConfig(), vmwebhook.DefaultConfig(), 1, mesh.OnboardedByController, time.Now())).To(Succeed())
		Expect(adminClient.Update(ctx, vmi)).To(Succeed())
		takeOver(ctx, vmi, target)
		row, err := statusOf(ctx, ns, "db")()
		Expect(err).NotTo(HaveOccurred())
		Expect(row).To(And(inState(mesh.Broken), HaveField("Reason", ContainSubstring("wait for a proxy that is not there")),
			HaveField("NextStep", ContainSubstring("virtctl migrate db"))))
		_, _, code := kubectlVirtmesh(ctx, "", ns, "status", "db")
		Expect(code).To(Equal(cli.ExitTrouble))

		By("the API server refuses each of virtmesh's migrations: after the last attempt it pins the VMI again, and its Warning says the VM is still in that pod")
		refuseRealMigrationsIn(ctx, ns)
		mgr = startManager(managerConfig())
		// Step by step (each attempt waits out its backoff), so a failure
		// says which step stalled.
		for attempt := 1; attempt < mesh.MaxOnboardingAttempts; attempt++ {
			Eventually(func(g Gomega) {
				vmi, err := vmiNamed(ctx, ns, "db")()
				g.Expect(err).NotTo(HaveOccurred())
				if _, onboarding := vmi.Annotations[mesh.OnboardingAnnotation]; !onboarding && vmi.Annotations[mesh.PinnedAnnotation] != "" {
					return // on to the pin already
				}
				o, err := onboardingOf(vmi)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(o.Attempt).To(BeNumerically(">=", attempt))
				if o.Attempt == attempt {
					g.Expect(o.LastFailure).To(ContainSubstring("the API server refused to create it"))
				}
			}).WithTimeout(converge).Should(Succeed(), "attempt %d refused", attempt)
		}
		Eventually(vmiNamed(ctx, ns, "db")).WithTimeout(converge).Should(pinnedVMI)
		Eventually(func() []string {
			return eventMessages(ctx, ns, "VirtualMachine", "db", controllers.ReasonOnboardingAbandoned)
		}).WithTimeout(converge).Should(ContainElement(And(ContainSubstring("Before the pin it was Broken"),
			ContainSubstring("virtctl migrate db"), ContainSubstring("the API server refused to create it"))))
		Expect(eventMessages(ctx, ns, "VirtualMachine", "db", controllers.ReasonOnboardingFailed)).To(And(
			HaveLen(mesh.MaxOnboardingAttempts-1), HaveEach(ContainSubstring("the API server refused to create it"))), "each attempt was refused once")
	})

	It("onboard: annotations virtmesh would not act on take no slot: another migration's name, a finished VMI's, a paused VMI's", func(ctx SpecContext) {
		installStandInInjector(ctx) // the new pods get a proxy
		a, b, c := newNamespace(ctx), newNamespace(ctx), newNamespace(ctx)
		cleanup := func(vmi *kubevirtv1.VirtualMachineInstance) {
			DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(adminClient.Delete(ctx, vmi))).To(Succeed()) })
		}
		By("a tenant annotates a VMI in " + a + " as onboarding, naming a migration that is not its own")
		forged := legacyVM(ctx, a, "forged")
		cleanup(forged)
		if forged.Annotations == nil {
			forged.Annotations = map[string]string{}
		}
		forged.Annotations[mesh.OnboardingAnnotation] = mesh.OnboardingStatus{Attempt: 1, Migration: "someone-elses",
			By: mesh.OnboardedByCLI, Started: metav1.NewTime(time.Now().Add(365 * 24 * time.Hour))}.Encode()
		Expect(adminClient.Update(ctx, forged)).To(Succeed())
		By("a VMI in " + b + " that finished while its annotation still says onboarding")
		done := legacyVM(ctx, b, "done")
		cleanup(done)
		if done.Annotations == nil {
			done.Annotations = map[string]string{}
		}
		done.Annotations[mesh.OnboardingAnnotation] = onboard.Attempt(done, 1, mesh.OnboardedByCLI, time.Now()).Encode()
		done.Status.Phase = kubevirtv1.Succeeded
		Expect(adminClient.Update(ctx, done)).To(Succeed())
		By("a VMI in " + c + " that kubectl virtmesh onboard prepared, then paused before its migration could start")
		napping := legacyVM(ctx, c, "napping")
		cleanup(napping)
		onboard.Pin(napping, time.Now())
		Expect(onboard.Prepare(napping, vmwebhook.Env{Namespace: vmwebhook.Namespace{Name: c, Labels: map[string]string{"istio-injection": "enabled"}}},
			mesh.DefaultConfig(), vmwebhook.DefaultConfig(), 1, mesh.OnboardedByCLI, time.Now())).To(Succeed())
		napping.Status.Conditions = append(napping.Status.Conditions, kubevirtv1.VirtualMachineInstanceCondition{
			Type: kubevirtv1.VirtualMachineInstancePaused, Status: corev1.ConditionTrue})
		Expect(adminClient.Update(ctx, napping)).To(Succeed())
		for _, ns := range []string{a, b, c} {
			cleanup(legacyVM(ctx, ns, "vm"))
			setNamespaceLabels(ctx, ns, map[string]string{"istio-injection": "enabled", mesh.ExistingVMIsLabel: string(mesh.ExistingOnboard)})
		}
		By("the limit is 2 namespaces: the real VMs of two of them start, whichever")
		Eventually(func(g Gomega) {
			ms, err := onboardingMigrations(ctx, a, b, c)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(ms).To(HaveLen(2))
			g.Expect(ms).To(HaveEach(HaveField("Spec.VMIName", "vm")))
		}).WithTimeout(converge).Should(Succeed())
		Eventually(eventMessages).WithArguments(ctx, a, "VirtualMachine", "forged", controllers.ReasonCannotOnboard).
			WithTimeout(converge).Should(ContainElement(ContainSubstring("which virtmesh would not have created for this VMI")))
	})

	It("an onboarding annotation written on a VM already in the mesh is removed and reported, never counted, whatever it says", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		vmi := vmWithVMI(ctx, ns, "web", testkit.VMISpec(8080))
		startOn(ctx, vmi, "node01", proxyIsReady)
		Eventually(statusOf(ctx, ns, "web")).WithTimeout(converge).Should(inState(mesh.Meshed))
		forge := func(started time.Time) {
			GinkgoHelper()
			Eventually(func() error {
				if err := adminClient.Get(ctx, client.ObjectKeyFromObject(vmi), vmi); err != nil {
					return err
				}
				vmi.Annotations[mesh.OnboardingAnnotation] = onboard.Attempt(vmi, 1, mesh.OnboardedByCLI, started).Encode()
				return adminClient.Update(ctx, vmi)
			}).Should(Succeed())
			Eventually(vmiNamed(ctx, ns, "web")).WithTimeout(converge).Should(HaveField("Annotations", And(
				Not(HaveKey(mesh.OnboardingAnnotation)), HaveKeyWithValue(mesh.InjectKey, "true"))))
		}
		counted := func() []float64 {
			GinkgoHelper()
			var out []float64
			for _, result := range []string{"succeeded", "noproxy"} {
				n, err := onboardingCount(result)
				Expect(err).NotTo(HaveOccurred())
				out = append(out, n)
			}
			return out
		}
		before := counted()

		By("a tenant writes an onboarding annotation virtmesh could have written, dated before the VM's pod was created")
		forge(time.Now().Add(-time.Hour))
		Eventually(eventMessages).WithArguments(ctx, ns, "VirtualMachine", "web", controllers.ReasonCannotOnboard).
			WithTimeout(converge).Should(ContainElement(ContainSubstring("it was in the mesh already")))
		Expect(eventReasons(ctx, ns, "VirtualMachine", "web")).NotTo(ContainElement(controllers.ReasonOnboarded))
		Expect(counted()).To(Equal(before))

		By("a node drain's migration moves the VM; then the tenant writes the annotation again")
		takeOver(ctx, vmi, startTarget(ctx, vmi, "node02", proxyIsReady))
		Eventually(statusOf(ctx, ns, "web")).WithTimeout(converge).Should(And(inState(mesh.Meshed), HaveField("Node", "node02")))
		forge(time.Now())
		Eventually(eventMessages).WithArguments(ctx, ns, "VirtualMachine", "web", controllers.ReasonOnboarded).
			WithTimeout(converge).Should(ContainElement(ContainSubstring("without counting it")))
		Expect(counted()).To(Equal(before))
		Expect(statusOf(ctx, ns, "web")()).To(inState(mesh.Meshed))
	})

	It("onboard: while the API server would refuse its migration, the VMI stays pinned and is reported; it onboards once accepted", func(ctx SpecContext) {
		installStandInInjector(ctx) // the new pods get a proxy
		ns := newNamespace(ctx)
		legacyVM(ctx, ns, "db")
		refuseMigrationsIn(ctx, ns)
		setNamespaceLabels(ctx, ns, map[string]string{"istio-injection": "enabled", mesh.ExistingVMIsLabel: string(mesh.ExistingOnboard)})
		Eventually(eventMessages).WithArguments(ctx, ns, "VirtualMachine", "db", controllers.ReasonCannotOnboard).WithTimeout(converge).
			Should(ContainElement(And(ContainSubstring("would refuse its live migration"), ContainSubstring("in-flight migration detected"))))
		Consistently(vmiNamed(ctx, ns, "db")).WithTimeout(3*time.Second).Should(And(pinnedVMI,
			HaveField("Annotations", Not(HaveKey(mesh.OnboardingAnnotation)))), "nothing changes while KubeVirt would refuse")
		Expect(eventMessages(ctx, ns, "VirtualMachine", "db", controllers.ReasonOnboardingFailed)).To(BeEmpty())

		By("KubeVirt accepts migrations again")
		Expect(adminClient.Delete(ctx, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "refuse-migrations-" + ns}})).To(Succeed())
		Eventually(onboardingMigrations).WithArguments(ctx, ns).WithTimeout(2 * converge).Should(HaveLen(1))
		Expect(statusOf(ctx, ns, "db")()).To(inState(mesh.Onboarding))
	})

	It("onboard: a migration refused after the VMI was updated is a failed attempt, retried after a backoff, then abandoned", func(ctx SpecContext) {
		installStandInInjector(ctx) // the new pods get a proxy
		ns := newNamespace(ctx)
		legacyVM(ctx, ns, "db")
		refuseRealMigrationsIn(ctx, ns)
		setNamespaceLabels(ctx, ns, map[string]string{"istio-injection": "enabled", mesh.ExistingVMIsLabel: string(mesh.ExistingOnboard)})
		Eventually(statusOf(ctx, ns, "db")).WithTimeout(converge).Should(And(inState(mesh.Onboarding),
			HaveField("Reason", ContainSubstring("in-flight migration detected"))))
		// Retried after 2 s, then 4 s (the suite's delay), not every few milliseconds.
		Eventually(vmiNamed(ctx, ns, "db")).WithTimeout(converge).Should(And(pinnedVMI,
			HaveField("Annotations", HaveKeyWithValue(mesh.PinnedAnnotation, HavePrefix(mesh.PinAbandonedPrefix)))))
		// One Warning per attempt: each was tried once. (Events are sent
		// after the write they report, from a queue.)
		Eventually(eventMessages).WithArguments(ctx, ns, "VirtualMachine", "db", controllers.ReasonOnboardingAbandoned).Should(
			ContainElement(ContainSubstring("kubectl virtmesh onboard db -n " + ns)))
		Expect(eventMessages(ctx, ns, "VirtualMachine", "db", controllers.ReasonOnboardingFailed)).To(HaveLen(mesh.MaxOnboardingAttempts - 1))
		Expect(eventMessages(ctx, ns, "VirtualMachine", "db", controllers.ReasonOnboardingFailed)).To(
			ContainElement(ContainSubstring("the API server refused to create it")))
		Expect(onboardingMigrations(ctx, ns)).To(BeEmpty())
	})

	It("onboard: waits while another migration of the VM is starting; a migration into a pod without a proxy is reported, not called a success", func(ctx SpecContext) {
		installStandInInjector(ctx) // the new pods get a proxy
		ns := newNamespace(ctx)
		vmi := legacyVM(ctx, ns, "db")
		By("a node drain's migration is starting: its target launcher pod exists, rendered before the mesh metadata")
		target := startTarget(ctx, vmi, "node03", withoutProxy)
		setNamespaceLabels(ctx, ns, map[string]string{"istio-injection": "enabled", mesh.ExistingVMIsLabel: string(mesh.ExistingOnboard)})
		Eventually(vmiNamed(ctx, ns, "db")).WithTimeout(converge).Should(pinnedVMI)
		Eventually(eventMessages).WithArguments(ctx, ns, "VirtualMachine", "db", controllers.ReasonCannotOnboard).
			WithTimeout(converge).Should(ContainElement(ContainSubstring("target launcher pod " + target.Name)))
		Consistently(onboardingMigrations).WithArguments(ctx, ns).WithTimeout(3 * time.Second).Should(BeEmpty())

		By("that migration ends (its target pod fails): onboarding starts")
		target.Status.Phase = corev1.PodFailed
		Expect(adminClient.Status().Update(ctx, target)).To(Succeed())
		Eventually(onboardingMigrations).WithArguments(ctx, ns).WithTimeout(2 * converge).Should(HaveLen(1))

		By("the migration succeeds, but no injector gave the new pod a proxy")
		ms, err := onboardingMigrations(ctx, ns)
		Expect(err).NotTo(HaveOccurred())
		endMigrationWithoutProxy(ctx, &ms[0])
		Eventually(eventMessages).WithArguments(ctx, ns, "VirtualMachine", "db", controllers.ReasonOnboardedNoProxy).
			WithTimeout(converge).Should(ContainElement(And(ContainSubstring("has no istio-proxy"),
			ContainSubstring("kubectl virtmesh check-namespace "+ns))), "the state's own next step, not the onboarding's")
		Eventually(statusOf(ctx, ns, "db")).WithTimeout(converge).Should(inState(mesh.NoProxy))
		Expect(eventReasons(ctx, ns, "VirtualMachine", "db")).NotTo(ContainElement(controllers.ReasonOnboarded))
	})
	It("onboard a Broken VM (migrated into a proxy after its namespace joined): done only once a migration moves it into a pod created with the mesh metadata", func(ctx SpecContext) {
		installStandInInjector(ctx) // the new pods get a proxy
		ns := newNamespace(ctx)
		vmi := legacyVM(ctx, ns, "db")
		setNamespaceLabels(ctx, ns, map[string]string{"istio-injection": "enabled", mesh.ExistingVMIsLabel: string(mesh.ExistingIgnore)})
		Eventually(statusOf(ctx, ns, "db")).WithTimeout(converge).Should(inState(mesh.NeedsRestart))
		By("a node drain's migration: the target pod gets a proxy KubeVirt does not serve")
		takeOver(ctx, vmi, startTarget(ctx, vmi, "node03", proxyIsReady))
		Eventually(statusOf(ctx, ns, "db")).WithTimeout(converge).Should(inState(mesh.Broken))

		By("kubectl virtmesh onboard: the VMI gets the mesh metadata; its pod's proxy still predates it")
		out, errOut, code := kubectlVirtmesh(ctx, "", ns, "onboard", "db")
		Expect(code).To(Equal(cli.ExitOK), out+errOut)
		Eventually(onboardingMigrations).WithArguments(ctx, ns).WithTimeout(converge).Should(HaveLen(1))
		Eventually(statusOf(ctx, ns, "db")).WithTimeout(converge).Should(And(inState(mesh.Onboarding),
			HaveField("Reason", ContainSubstring("predates that"))))
		Consistently(vmiNamed(ctx, ns, "db")).WithTimeout(3*time.Second).Should(HaveField("Annotations", HaveKey(mesh.OnboardingAnnotation)),
			"the old pod's proxy does not make it Meshed")
		Expect(eventReasons(ctx, ns, "VirtualMachine", "db")).NotTo(ContainElement(controllers.ReasonOnboarded))

		By("the migration moves it into a pod created with the mesh metadata")
		ms, err := onboardingMigrations(ctx, ns)
		Expect(err).NotTo(HaveOccurred())
		endMigration(ctx, &ms[0], kubevirtv1.MigrationSucceeded)
		Eventually(statusOf(ctx, ns, "db")).WithTimeout(converge).Should(inState(mesh.Meshed))
		Eventually(vmiNamed(ctx, ns, "db")).WithTimeout(converge).Should(HaveField("Annotations", Not(HaveKey(mesh.OnboardingAnnotation))))
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "db").WithTimeout(converge).
			Should(ContainElement(controllers.ReasonOnboarded))
	})

	It("onboard: never pinned again while a migration of it is starting with the mesh metadata; that migration bringing it in ends the onboarding", func(ctx SpecContext) {
		installStandInInjector(ctx) // the new pods get a proxy
		ns := newNamespace(ctx)
		vmi := legacyVM(ctx, ns, "db")
		setNamespaceLabels(ctx, ns, map[string]string{"istio-injection": "enabled", mesh.ExistingVMIsLabel: string(mesh.ExistingOnboard)})
		Eventually(onboardingMigrations).WithArguments(ctx, ns).WithTimeout(converge).Should(HaveLen(1))
		ms, err := onboardingMigrations(ctx, ns)
		Expect(err).NotTo(HaveOccurred())
		endMigration(ctx, &ms[0], kubevirtv1.MigrationFailed)
		Eventually(statusOf(ctx, ns, "db")).WithTimeout(converge).Should(And(inState(mesh.Onboarding), HaveField("Reason", ContainSubstring("failed"))))

		By("a node drain's migration starts, its target pod rendered with the mesh metadata; then the policy turns to pin")
		target := startTarget(ctx, vmi, "node03", proxyIsReady)
		setNamespaceLabels(ctx, ns, map[string]string{mesh.ExistingVMIsLabel: string(mesh.ExistingPin)})
		Consistently(vmiNamed(ctx, ns, "db")).WithTimeout(6*time.Second).Should(And( // the retry was due after 2 s
			HaveField("Annotations", And(HaveKeyWithValue(mesh.InjectKey, "true"), HaveKey(mesh.OnboardingAnnotation))),
			HaveField("Labels", HaveKeyWithValue(mesh.InjectKey, "true"))), "pinning now would break the VM once it moves")

		By("the drain's migration hands the VM over: it is in the mesh, and the onboarding is done")
		takeOver(ctx, vmi, target)
		Eventually(statusOf(ctx, ns, "db")).WithTimeout(converge).Should(inState(mesh.Meshed))
		Eventually(vmiNamed(ctx, ns, "db")).WithTimeout(converge).Should(HaveField("Annotations", Not(HaveKey(mesh.OnboardingAnnotation))))
		Eventually(eventReasons).WithArguments(ctx, ns, "VirtualMachine", "db").WithTimeout(converge).
			Should(ContainElement(controllers.ReasonOnboarded))
		Expect(eventReasons(ctx, ns, "VirtualMachine", "db")).NotTo(ContainElement(controllers.ReasonOnboardingAbandoned))
		Expect(onboardingMigrations(ctx, ns)).To(HaveLen(1))
	})

	It("onboard: a namespace that leaves the mesh during a backoff ends the onboarding: no further migration, the VMI as before", func(ctx SpecContext) {
		installStandInInjector(ctx) // the new pods get a proxy
		ns := newNamespace(ctx)
		legacyVM(ctx, ns, "db")
		setNamespaceLabels(ctx, ns, map[string]string{"istio-injection": "enabled", mesh.ExistingVMIsLabel: string(mesh.ExistingOnboard)})
		Eventually(onboardingMigrations).WithArguments(ctx, ns).WithTimeout(converge).Should(HaveLen(1))
		ms, err := onboardingMigrations(ctx, ns)
		Expect(err).NotTo(HaveOccurred())
		endMigration(ctx, &ms[0], kubevirtv1.MigrationFailed)
		Eventually(statusOf(ctx, ns, "db")).WithTimeout(converge).Should(inState(mesh.Onboarding))

		setNamespaceLabels(ctx, ns, map[string]string{"istio-injection": "-"})
		Eventually(eventMessages).WithArguments(ctx, ns, "VirtualMachine", "db", controllers.ReasonOnboardingAbandoned).
			WithTimeout(converge).Should(ContainElement(ContainSubstring("no longer in the mesh")))
		Eventually(vmiNamed(ctx, ns, "db")).WithTimeout(converge).Should(And(
			HaveField("Labels", Not(HaveKey(mesh.InjectKey))),
			HaveField("Annotations", And(Not(HaveKey(mesh.InjectKey)), Not(HaveKey(mesh.OnboardingAnnotation)), Not(HaveKey(mesh.PinnedAnnotation))))))
		Eventually(statusOf(ctx, ns, "db")).WithTimeout(converge).Should(inState(mesh.NotInMesh))
		Consistently(onboardingMigrations).WithArguments(ctx, ns).WithTimeout(3 * time.Second).Should(HaveLen(1))
	})
})
