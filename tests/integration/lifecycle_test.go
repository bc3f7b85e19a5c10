package integration

import (
	"io"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/app"
	"github.com/virtmesh/virtmesh/internal/testkit/local"
)

var _ = Describe("The manager", Ordered, func() {
	leaseKey := client.ObjectKey{Namespace: local.Namespace, Name: app.LeaderElectionID}

	It("is live and ready, serves metrics, and holds the leader lease", func(ctx SpecContext) {
		Expect(mgr.probe("/healthz")).To(Equal(http.StatusOK))
		Expect(mgr.probe("/readyz")).To(Equal(http.StatusOK))

		resp, err := http.Get("http://" + mgr.opts.MetricsBindAddress + "/metrics")
		Expect(err).NotTo(HaveOccurred())
		body, err := io.ReadAll(resp.Body)
		Expect(resp.Body.Close()).To(Succeed())
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		Expect(string(body)).To(ContainSubstring("rest_client_requests_total"))

		lease := &coordinationv1.Lease{}
		Eventually(func(g Gomega) {
			g.Expect(adminClient.Get(ctx, leaseKey, lease)).To(Succeed())
			g.Expect(ptr.Deref(lease.Spec.HolderIdentity, "")).NotTo(BeEmpty())
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("stops cleanly, releasing the lease, and starts again", func(ctx SpecContext) {
		Expect(mgr.stop(ctx)).To(Succeed())
		_, err := mgr.probe("/healthz")
		Expect(err).To(HaveOccurred(), "health endpoint still served after stop")
		lease := &coordinationv1.Lease{}
		Expect(adminClient.Get(ctx, leaseKey, lease)).To(Succeed())
		Expect(ptr.Deref(lease.Spec.HolderIdentity, "")).To(BeEmpty(), "lease not released on shutdown")

		mgr = startManager(managerConfig())
		Eventually(func(g Gomega) {
			g.Expect(adminClient.Get(ctx, leaseKey, lease)).To(Succeed())
			g.Expect(ptr.Deref(lease.Spec.HolderIdentity, "")).NotTo(BeEmpty())
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
	}, SpecTimeout(time.Minute))
})
