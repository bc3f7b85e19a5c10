package integration

import (
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/app"
	"github.com/virtmesh/virtmesh/internal/testkit"
	"github.com/virtmesh/virtmesh/internal/testkit/local"
)

// grantNames lets virtmesh's ServiceAccount update one more
// MutatingWebhookConfiguration and read and update one more Secret, by name,
// for the rest of the spec: what the README says to add for a
// --webhook-configuration-name or --cert-secret-name of one's own.
func grantNames(ctx SpecContext, webhookConfiguration, secret string) {
	GinkgoHelper()
	subjects := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: local.Namespace, Name: local.ServiceAccount}}
	name := "virtmesh-extra-" + webhookConfiguration
	objs := []client.Object{
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"},
			ResourceNames: []string{webhookConfiguration}, Verbs: []string{"update"}}}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}, Subjects: subjects},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: local.Namespace}, Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{secret}, Verbs: []string{"get", "update"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: local.Namespace},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}, Subjects: subjects},
	}
	for _, o := range objs {
		Expect(adminClient.Create(ctx, o)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(adminClient.Delete(ctx, o))).To(Succeed()) })
	}
}

var _ = Describe("Self-managed webhook certificates (--cert-rotation)", func() {
	It("makes a CA and serving certificate, injects the CA, and serves once the certificate is mounted", func(ctx SpecContext) {
		const secretName, configName = "rotation-test-cert", "virtmesh-rotation-test"
		By("installing what manifests/default ships: an empty Secret and the webhook configuration")
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secretName, Namespace: local.Namespace}}
		Expect(adminClient.Create(ctx, secret)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(adminClient.Delete(ctx, secret))).To(Succeed()) })
		// A configuration of its own that matches nothing, so the suite's
		// webhook is not disturbed.
		mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: configName},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{
				Name:                    "rotation.vmi.virtmesh.io",
				AdmissionReviewVersions: []string{"v1"},
				SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
				ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
					Namespace: local.Namespace, Name: "virtmesh-webhook", Path: ptr.To("/mutate-kubevirt-io-v1-virtualmachineinstance")}},
				ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"never": "matches"}},
			}},
		}
		Expect(adminClient.Create(ctx, mwc)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(adminClient.Delete(ctx, mwc))).To(Succeed()) })
		By("granting those names, as the README says for a --webhook-configuration-name and --cert-secret-name of one's own")
		grantNames(ctx, configName, secretName)

		By("starting a replica with --cert-rotation (webhook only)")
		certDir := GinkgoT().TempDir()
		health := testkit.FreeAddress()
		_, port, _ := strings.Cut(testkit.FreeAddress(), ":")
		m := startManagerNoWait(managerConfig(), func(o *app.Options) {
			o.EnableControllers, o.LeaderElect = false, false
			o.CertRotation, o.CertSecretName, o.WebhookConfigurationName, o.CertNamespace = true, secretName, configName, local.Namespace
			o.WebhookCertDir, o.WebhookHost = certDir, "127.0.0.1"
			o.WebhookPort, _ = strconv.Atoi(port)
			o.HealthProbeBindAddress, o.MetricsBindAddress = health, "0"
		})
		DeferCleanup(func(ctx SpecContext) { Expect(m.stop(ctx)).To(Succeed()) })

		By("the Secret gets a CA and a certificate for the webhook Service")
		Eventually(func(g Gomega) {
			g.Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(secret), secret)).To(Succeed())
			g.Expect(secret.Data).To(HaveKey("tls.crt"))
			g.Expect(secret.Data).To(HaveKey("tls.key"))
			g.Expect(secret.Data).To(HaveKey("ca.crt"))
		}).WithContext(ctx).WithTimeout(converge).Should(Succeed())
		block, _ := pem.Decode(secret.Data["tls.crt"])
		Expect(block).NotTo(BeNil())
		cert, err := x509.ParseCertificate(block.Bytes)
		Expect(err).NotTo(HaveOccurred())
		Expect(cert.DNSNames).To(ContainElement("virtmesh-webhook.virtmesh-system.svc"))
		Expect(cert.NotAfter).To(BeTemporally(">", time.Now().Add(24*time.Hour)))

		By("not ready, and the CA not injected, while the kubelet has not mounted the certificate")
		Consistently(func() (int, error) { return httpStatus("http://" + health + "/readyz") }).
			WithTimeout(3 * time.Second).ShouldNot(Equal(http.StatusOK))
		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(mwc), mwc)).To(Succeed())
		Expect(mwc.Webhooks[0].ClientConfig.CABundle).To(BeEmpty())

		By("mounting it, as the kubelet does: the webhook serves and the replica becomes ready")
		for k, v := range secret.Data {
			Expect(os.WriteFile(filepath.Join(certDir, k), v, 0o600)).To(Succeed())
		}
		Eventually(func() (int, error) { return httpStatus("http://" + health + "/readyz") }).
			WithTimeout(converge).Should(Equal(http.StatusOK))
		By("and the CA is injected into the webhook configuration")
		Eventually(func(g Gomega) {
			g.Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(mwc), mwc)).To(Succeed())
			g.Expect(mwc.Webhooks[0].ClientConfig.CABundle).To(Equal(secret.Data["ca.crt"]))
		}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())

		By("deleting the Secret by mistake: virtmesh recreates it from the mounted certificate, same CA, so nothing breaks")
		oldCA := secret.Data["ca.crt"]
		Expect(adminClient.Delete(ctx, secret)).To(Succeed())
		Eventually(func(g Gomega) {
			fresh := &corev1.Secret{}
			g.Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(secret), fresh)).To(Succeed())
			g.Expect(fresh.UID).NotTo(Equal(secret.UID))
			g.Expect(fresh.Data).To(HaveKeyWithValue("ca.crt", oldCA))
			g.Expect(fresh.Data).To(HaveKey("tls.crt"))
		}).WithContext(ctx).WithTimeout(converge).Should(Succeed())
		Consistently(func(g Gomega) {
			g.Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(mwc), mwc)).To(Succeed())
			g.Expect(mwc.Webhooks[0].ClientConfig.CABundle).To(Equal(oldCA))
		}).WithContext(ctx).WithTimeout(3 * time.Second).Should(Succeed())

		By("with nothing mounted either, it is created empty and cert-controller makes a new CA and injects it")
		for _, f := range []string{"ca.crt", "ca.key", "tls.crt", "tls.key"} {
			Expect(os.Remove(filepath.Join(certDir, f))).To(Succeed())
		}
		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(secret), secret)).To(Succeed())
		Expect(adminClient.Delete(ctx, secret)).To(Succeed())
		Eventually(func(g Gomega) {
			fresh := &corev1.Secret{}
			g.Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(secret), fresh)).To(Succeed())
			g.Expect(fresh.Data).To(HaveKey("tls.crt"))
			g.Expect(fresh.Data["ca.crt"]).NotTo(Equal(oldCA))
			g.Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(mwc), mwc)).To(Succeed())
			g.Expect(mwc.Webhooks[0].ClientConfig.CABundle).To(Equal(fresh.Data["ca.crt"]))
		}).WithContext(ctx).WithTimeout(converge).Should(Succeed())
	}, SpecTimeout(2*time.Minute))
})
