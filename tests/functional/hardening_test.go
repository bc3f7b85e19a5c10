package functional

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

var _ = Describe("Hardening on a real cluster", Label("mesh", "hardening"), func() {
	It("[12] starts a VM whose name is longer than a label value, meshed, with its Service", func(ctx SpecContext) {
		ns := meshNamespace(ctx)
		name := "postgres-primary-for-the-customer-billing-and-invoicing-platform-eu"
		Expect(len(name)).To(BeNumerically(">", 63))
		_, pod := startVM(ctx, ns, guestVM(name, ""))
		Expect(hasProxy(pod)).To(BeTrue())
		app := pod.Labels[mesh.AppLabel]
		Expect(len(app)).To(BeNumerically("<=", 63))
		Expect(app).To(HavePrefix(name[:40]))
		Eventually(func() error {
			_, err := k8s.CoreV1().Services(ns).Get(ctx, app, getOptions)
			return err
		}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())
	}, SpecTimeout(15*time.Minute))

	It("[13] keeps Istio's proxy away from a VM that cannot join the mesh (no pod network), which still starts", func(ctx SpecContext) {
		ns := meshNamespace(ctx)
		vm := guestVM("isolated", "")
		spec := &vm.Spec.Template.Spec
		spec.Networks, spec.Domain.Devices.Interfaces = nil, nil
		spec.Domain.Devices.AutoattachPodInterface = ptr.To(false)
		created, err := virtClient.VirtualMachine(ns).Create(ctx, vm, createOptions)
		Expect(err).NotTo(HaveOccurred())
		pod := waitLauncherReady(ctx, ns, created.Name)
		// Istio's namespace injector would have given it a proxy KubeVirt cannot serve.
		Expect(hasProxy(pod)).To(BeFalse())
		Expect(pod.Labels).To(HaveKeyWithValue(mesh.InjectKey, "false"))
		vmi, err := virtClient.VirtualMachineInstance(ns).Get(ctx, created.Name, getOptions)
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.Split(vmi.Annotations[mesh.MutationsAnnotation], ",")).To(ContainElement("opt-out"))
		Expect(vmi.Status.Phase).To(Equal(kubevirtv1.Running))
	}, SpecTimeout(15*time.Minute))
})
