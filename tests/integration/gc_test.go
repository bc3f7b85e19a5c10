package integration

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"kubevirt.io/client-go/kubevirt"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

var _ = Describe("kube-controller-manager", func() {
	It("garbage-collects an object whose VirtualMachine owner is deleted", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		// Act as a VM owner would, through KubeVirt's own typed client.
		virtClient, err := kubevirt.NewForConfig(cp.Config())
		Expect(err).NotTo(HaveOccurred())
		vm, err := virtClient.KubevirtV1().VirtualMachines(ns).Create(ctx, &kubevirtv1.VirtualMachine{
			ObjectMeta: metav1.ObjectMeta{Name: "owner"},
			Spec: kubevirtv1.VirtualMachineSpec{
				RunStrategy: ptrTo(kubevirtv1.RunStrategyHalted),
				Template:    &kubevirtv1.VirtualMachineInstanceTemplateSpec{},
			},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())

		dependent := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Name: "dependent", Namespace: ns,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: kubevirtv1.SchemeGroupVersion.String(), Kind: "VirtualMachine", Name: vm.Name, UID: vm.UID,
			}},
		}}
		Expect(adminClient.Create(ctx, dependent)).To(Succeed())
		Consistently(adminClient.Get).WithContext(ctx).WithArguments(client.ObjectKeyFromObject(dependent), &corev1.ConfigMap{}).
			WithTimeout(2 * time.Second).Should(Succeed())

		Expect(virtClient.KubevirtV1().VirtualMachines(ns).Delete(ctx, vm.Name, metav1.DeleteOptions{})).To(Succeed())
		Eventually(adminClient.Get).WithContext(ctx).WithArguments(client.ObjectKeyFromObject(dependent), &corev1.ConfigMap{}).
			WithTimeout(time.Minute).Should(Satisfy(apierrors.IsNotFound))
	})

	It("finishes deleting a namespace that holds KubeVirt objects", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		Expect(adminClient.Create(ctx, &kubevirtv1.VirtualMachineInstance{
			ObjectMeta: metav1.ObjectMeta{Name: "doomed", Namespace: ns},
		})).To(Succeed())
		Expect(adminClient.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		Eventually(adminClient.Get).WithContext(ctx).WithArguments(client.ObjectKey{Name: ns}, &corev1.Namespace{}).
			WithTimeout(time.Minute).Should(Satisfy(apierrors.IsNotFound))
	})
})

func ptrTo[T any](v T) *T { return &v }
