package integration

import (
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/testkit"
)

var _ = Describe("A VirtualMachineInstanceReplicaSet", func() {
	It("gets one Service owned by the replica set, which scaling does not rewrite", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		selector := map[string]string{"kubevirt.io/vmReplicaSet": "cache"}
		rs := &kubevirtv1.VirtualMachineInstanceReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: "cache"},
			Spec: kubevirtv1.VirtualMachineInstanceReplicaSetSpec{Replicas: ptr.To[int32](0),
				Selector: &metav1.LabelSelector{MatchLabels: selector},
				Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: selector},
					Spec: testkit.VMISpec(6379)}},
		}
		createIn(ctx, ns, rs)
		virt, _ := vmOwner()
		replica := func(i int) {
			GinkgoHelper()
			// As KubeVirt's replica set controller creates them: the template, controlled by the replica set.
			vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "cache-" + strconv.Itoa(i), Labels: selector,
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, kubevirtv1.VirtualMachineInstanceReplicaSetGroupVersionKind)}},
				Spec: testkit.VMISpec(6379)}
			_, err := virt.KubevirtV1().VirtualMachineInstances(ns).Create(ctx, vmi, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
		}
		for i := range 3 {
			replica(i)
		}
		Eventually(getService(ctx, ns, "cache")).WithTimeout(converge).Should(And(
			WithTransform(servicePorts, Equal([]int32{6379})),
			WithTransform(ownerNames, Equal([]string{"VirtualMachineInstanceReplicaSet/cache"})),
			// created, and as wanted since: the create's entry only
			WithTransform(virtmeshOperations, Equal([]string{string(metav1.ManagedFieldsOperationUpdate)})),
		))
		svc, err := getService(ctx, ns, "cache")()
		Expect(err).NotTo(HaveOccurred())

		By("scaling up: the Service is not written again")
		replica(3)
		Consistently(getService(ctx, ns, "cache")).WithTimeout(3 * time.Second).Should(HaveField("ResourceVersion", svc.ResourceVersion))
		Expect(eventMessages(ctx, ns, "VirtualMachineInstance", "cache-3", "ServiceCreated")).To(BeEmpty())
	})
})
