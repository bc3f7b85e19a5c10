package integration

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/app"
	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

// attempt is one VMI create of the loop across a restart.
type attempt struct {
	at  time.Time
	err error
}

var _ = Describe("A rolling update (SIGTERM, then a new replica)", Ordered, func() {
	It("keeps answering admissions, not ready, for --shutdown-delay; while down it refuses VMIs and stores none unmeshed", func(ctx SpecContext) {
		const delay = 3 * time.Second
		Expect(mgr.stop(ctx)).To(Succeed())
		mgr = startManager(managerConfig(), func(o *app.Options) { o.ShutdownDelay = delay })

		ns := newLabelledNamespace(ctx, enabledNS)
		virt, _ := vmOwner()
		var (
			mu       sync.Mutex
			attempts []attempt
			done     = make(chan struct{})
			stopped  = make(chan struct{})
		)
		go func() {
			defer GinkgoRecover()
			defer close(stopped)
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				_, err := virt.KubevirtV1().VirtualMachineInstances(ns).Create(ctx, testkit.PlainVMI("loop-"+strconv.Itoa(i)), metav1.CreateOptions{})
				mu.Lock()
				attempts = append(attempts, attempt{time.Now(), err})
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		}()

		By("SIGTERM: readiness fails at once, while the webhook goes on answering")
		time.Sleep(500 * time.Millisecond)
		sigterm := time.Now()
		mgr.cancel()
		Eventually(func() (int, error) { return mgr.probe("/readyz") }).WithTimeout(time.Second).ShouldNot(Equal(http.StatusOK))
		notReady := time.Since(sigterm)

		By("the replica stops after the delay; a new one starts")
		select {
		case mgr.err = <-mgr.done:
			mgr.stopped = true
		case <-time.After(delay + 15*time.Second):
			Fail("the manager did not stop")
		}
		listenerClosed := time.Now()
		Expect(listenerClosed.Sub(sigterm)).To(BeNumerically(">=", delay), "stopped before --shutdown-delay")
		Expect(notReady).To(BeNumerically("<", delay), "readiness turned false only after the listener closed")
		time.Sleep(time.Second) // VMI creates meet no webhook now
		mgr = startManager(managerConfig())
		time.Sleep(time.Second)
		close(done)
		<-stopped

		mu.Lock()
		defer mu.Unlock()
		var whileServing, failedWhileDown int
		for _, a := range attempts {
			switch {
			case a.at.Before(listenerClosed.Add(-500 * time.Millisecond)):
				whileServing++
				Expect(a.err).NotTo(HaveOccurred(), "an admission failed while the replica was still serving")
			case a.at.After(listenerClosed.Add(500*time.Millisecond)) && a.err != nil:
				failedWhileDown++
			}
		}
		Expect(whileServing).To(BeNumerically(">", 10))
		Expect(failedWhileDown).To(BeNumerically(">", 0), "VMI creates succeeded with no webhook to mesh them")

		By("every VMI that was stored is meshed")
		vmis := &kubevirtv1.VirtualMachineInstanceList{}
		Expect(adminClient.List(ctx, vmis, client.InNamespace(ns))).To(Succeed())
		Expect(vmis.Items).NotTo(BeEmpty())
		for _, vmi := range vmis.Items {
			Expect(vmi.Labels).To(HaveKeyWithValue(mesh.InjectKey, "true"), vmi.Name)
			Expect(vmi.Annotations).To(HaveKeyWithValue(mesh.InjectKey, "true"), vmi.Name)
			Expect(vmi.Spec.Domain.Devices.Interfaces[0].Masquerade).NotTo(BeNil(), vmi.Name)
		}
	}, SpecTimeout(2*time.Minute))
})
