// Package functional checks virtmesh end to end on a real cluster with
// KubeVirt and Istio (kubevirtci: make cluster-up cluster-sync functest). It
// mirrors KubeVirt's own Istio suite, with no manual step but labelling a
// namespace. Without a reachable cluster it stops at once and says so.
package functional

import (
	"flag"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"kubevirt.io/client-go/kubecli"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/virtmesh/virtmesh/internal/app"
)

var (
	// virtmeshNamespace is where manifests/default installs virtmesh.
	virtmeshNamespace = flag.String("virtmesh-namespace", "virtmesh-system", "namespace virtmesh is deployed in")

	restConfig *rest.Config
	virtClient kubecli.KubevirtClient
	k8s        kubernetes.Interface
	cl         client.Client
)

func TestFunctional(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "virtmesh functional suite")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	var err error
	// --kubeconfig (registered by controller-runtime), $KUBECONFIG, or ~/.kube/config.
	restConfig, err = ctrlconfig.GetConfig()
	if err != nil {
		AbortSuite(fmt.Sprintf("no cluster to test: %v (set KUBECONFIG or --kubeconfig; make cluster-up cluster-sync starts one)", err))
	}
	restConfig.Timeout = 30 * time.Second
	k8s, err = kubernetes.NewForConfig(restConfig)
	Expect(err).NotTo(HaveOccurred())
	if _, err := k8s.Discovery().ServerVersion(); err != nil {
		AbortSuite(fmt.Sprintf("the cluster at %s is not reachable: %v (make cluster-up cluster-sync starts one)", restConfig.Host, err))
	}
	virtClient, err = kubecli.GetKubevirtClientFromRESTConfig(restConfig)
	Expect(err).NotTo(HaveOccurred())
	cl, err = client.New(restConfig, client.Options{Scheme: app.NewScheme()})
	Expect(err).NotTo(HaveOccurred())

	By("checking that KubeVirt, Istio and virtmesh are installed")
	_, err = virtClient.KubeVirt("kubevirt").Get(ctx, "kubevirt", getOptions)
	Expect(err).NotTo(HaveOccurred(), "KubeVirt is not installed (make cluster-up deploys it)")
	_, err = k8s.AppsV1().Deployments("istio-system").Get(ctx, "istiod", getOptions)
	Expect(err).NotTo(HaveOccurred(), "Istio is not installed (kubevirtci: KUBEVIRT_DEPLOY_ISTIO=true)")
	Eventually(func(g Gomega) {
		d, err := k8s.AppsV1().Deployments(*virtmeshNamespace).Get(ctx, "virtmesh", getOptions)
		g.Expect(err).NotTo(HaveOccurred(), "virtmesh is not deployed (make cluster-sync)")
		g.Expect(d.Status.ReadyReplicas).To(BeNumerically(">=", 1))
	}).WithContext(ctx).WithTimeout(2 * time.Minute).Should(Succeed())
}, NodeTimeout(5*time.Minute))
