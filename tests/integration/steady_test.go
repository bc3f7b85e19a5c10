package integration

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/app"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

var _ = Describe("The controllers at steady state", Ordered, func() {
	It("make zero API writes across full resyncs", func(ctx SpecContext) {
		By("restarting virtmesh with a 2s resync period, counting its write requests")
		Expect(mgr.stop(ctx)).To(Succeed())
		writes := &writeCounter{}
		mgr = startManager(writes.wrap(managerConfig()), func(o *app.Options) { o.Controllers.SyncPeriod = 2 * time.Second })

		ns := newLabelledNamespace(ctx, enabledNS)
		createIn(ctx, ns, testkit.MeshVM("web-v1", "web", "v1", 8080))
		createIn(ctx, ns, testkit.MeshVM("web-v2", "web", "v2", 8080, 9090))
		createIn(ctx, ns, testkit.MeshVM("db", "", "", 5432))
		Eventually(getService(ctx, ns, "web")).WithTimeout(converge).Should(WithTransform(servicePorts, Equal([]int32{8080, 9090})))
		Eventually(getService(ctx, ns, "db")).WithTimeout(converge).Should(WithTransform(servicePorts, Equal([]int32{5432})))
		Eventually(nadExists).WithArguments(ctx, ns).WithTimeout(converge).Should(BeTrue())

		snapshot := func() map[string]string {
			GinkgoHelper()
			out := map[string]string{}
			for _, l := range []client.ObjectList{&corev1.ServiceList{}, &nadv1.NetworkAttachmentDefinitionList{},
				&kubevirtv1.VirtualMachineList{}, &corev1.EventList{}} {
				Expect(adminClient.List(ctx, l, client.InNamespace(ns))).To(Succeed())
				Expect(meta.EachListItem(l, func(o runtime.Object) error {
					m := o.(client.Object)
					out[fmt.Sprintf("%T/%s/%s", o, m.GetName(), m.GetUID())] = m.GetResourceVersion()
					return nil
				})).To(Succeed())
			}
			return out
		}
		// Let the creation settle, then watch two full resyncs go by.
		time.Sleep(3 * time.Second)
		before, reconcilesBefore, writesBefore := snapshot(), reconciles("service")+reconciles("nad"), writes.snapshot()
		Expect(writesBefore).To(HaveKeyWithValue("POST /api/v1/namespaces/"+ns+"/services", 2),
			"the counter saw none of virtmesh's Service creates: it counts nothing")
		time.Sleep(7 * time.Second)
		after, reconcilesAfter, writesAfter := snapshot(), reconciles("service")+reconciles("nad"), writes.snapshot()
		Expect(reconcilesAfter-reconcilesBefore).To(BeNumerically(">=", 4), "no resync happened")
		Expect(writesAfter).To(Equal(writesBefore), "virtmesh sent write requests at steady state")
		Expect(after).To(Equal(before))
	}, SpecTimeout(2*time.Minute))

	It("converge after a restart mid-way with no duplicates", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		By("creating VMs, and stopping virtmesh while it works on them")
		vms := map[string]types.UID{}
		for i := range 12 {
			app := "app-" + strconv.Itoa(i%4)
			vm := testkit.MeshVM(app+"-v"+strconv.Itoa(i), app, "v"+strconv.Itoa(i), int32(8000+i))
			createIn(ctx, ns, vm)
			vms[vm.Name] = vm.UID
		}
		Expect(mgr.stop(ctx)).To(Succeed())
		mgr = startManager(managerConfig())

		for a := range 4 {
			app := "app-" + strconv.Itoa(a)
			Eventually(getService(ctx, ns, app)).WithTimeout(converge).Should(And(
				WithTransform(servicePorts, ConsistOf(int32(8000+a), int32(8004+a), int32(8008+a))),
				WithTransform(ownerNames, ConsistOf("VirtualMachine/"+app+"-v"+strconv.Itoa(a),
					"VirtualMachine/"+app+"-v"+strconv.Itoa(a+4), "VirtualMachine/"+app+"-v"+strconv.Itoa(a+8))),
			))
		}
		svcs := &corev1.ServiceList{}
		Expect(adminClient.List(ctx, svcs, client.InNamespace(ns))).To(Succeed())
		Expect(svcs.Items).To(HaveLen(4))
		nads := &nadv1.NetworkAttachmentDefinitionList{}
		Expect(adminClient.List(ctx, nads, client.InNamespace(ns))).To(Succeed())
		Expect(nads.Items).To(HaveLen(1))
	}, SpecTimeout(2*time.Minute))

	It("reports the meshed VMs as a gauge", func(ctx SpecContext) {
		ns := newLabelledNamespace(ctx, enabledNS)
		createIn(ctx, ns, testkit.MeshVM("counted-1", "", "", 8080))
		createIn(ctx, ns, testkit.MeshVM("counted-2", "", "", 8080))
		virt, _ := vmOwner()
		_, err := virt.KubevirtV1().VirtualMachineInstances(ns).Create(ctx, testkit.PlainVMI("counted"), metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() (float64, error) { return metricValue("virtmesh_meshed_virtualmachines") }).
			WithTimeout(converge).Should(BeNumerically(">=", 2))
		Eventually(func() (float64, error) { return metricValue("virtmesh_meshed_vmis") }).
			WithTimeout(converge).Should(BeNumerically(">=", 1))
	})
})

var metricLine = regexp.MustCompile(`(?m)^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$`)

// scrape returns the manager's metrics in the text format.
func scrape() (string, error) {
	resp, err := http.Get("http://" + mgr.opts.MetricsBindAddress + "/metrics")
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// metricValue sums every series of a metric.
func metricValue(name string) (float64, error) {
	text, err := scrape()
	if err != nil {
		return 0, err
	}
	sum := 0.0
	for _, m := range metricLine.FindAllStringSubmatch(text, -1) {
		if m[1] == name {
			v, _ := strconv.ParseFloat(m[3], 64)
			sum += v
		}
	}
	return sum, nil
}

// reconciles is how many reconciles a controller has finished.
func reconciles(controller string) float64 {
	GinkgoHelper()
	text, err := scrape()
	Expect(err).NotTo(HaveOccurred())
	sum := 0.0
	for _, m := range metricLine.FindAllStringSubmatch(text, -1) {
		if m[1] == "controller_runtime_reconcile_total" && regexp.MustCompile(`controller="`+controller+`"`).MatchString(m[2]) {
			v, _ := strconv.ParseFloat(m[3], 64)
			sum += v
		}
	}
	return sum
}
