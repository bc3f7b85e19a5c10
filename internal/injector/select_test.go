package injector

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"
)

func readWebhooks(t *testing.T, dir string) []*admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtures, dir, "mutatingwebhookconfiguration.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []*admissionregistrationv1.MutatingWebhookConfiguration
	for _, doc := range strings.Split(string(raw), "\n---") {
		mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := yaml.Unmarshal([]byte(doc), mwc); err != nil {
			t.Fatal(err)
		}
		if mwc.Name != "" {
			out = append(out, mwc)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no MutatingWebhookConfiguration", dir)
	}
	return out
}

func TestConfigMapKeyOfEveryRealInjector(t *testing.T) {
	for _, dir := range []string{"istio-1.18-multus", "istio-1.22-multus", "istio-1.30-multus", "istio-1.30-multus-rev-canary", "maistra-2.5"} {
		cm := readConfigMap(t, dir)
		mwc := readWebhooks(t, dir)[0]
		if mwc.Labels[WebhookLabel] != WebhookLabelValue {
			t.Errorf("%s: %s is not labelled %s=%s", dir, mwc.Name, WebhookLabel, WebhookLabelValue)
		}
		key, ok := ConfigMapKey(mwc)
		if !ok || key.Namespace != cm.Namespace || key.Name != cm.Name {
			t.Errorf("%s: ConfigMapKey = %v, the ConfigMap is %s/%s", dir, key, cm.Namespace, cm.Name)
		}
	}
}

func TestInjectsFollowsTheRealSelectors(t *testing.T) {
	inject := map[string]string{"sidecar.istio.io/inject": "true"}
	for _, tc := range []struct {
		dir     string
		ns      map[string]string
		injects bool
	}{
		{"istio-1.30-multus", map[string]string{"istio-injection": "enabled"}, true},
		{"istio-1.30-multus", map[string]string{"istio.io/rev": "default"}, true},
		{"istio-1.30-multus", map[string]string{"istio.io/rev": "canary"}, false},
		{"istio-1.30-multus", map[string]string{"istio-injection": "disabled"}, false},
		{"istio-1.30-multus", map[string]string{}, true}, // the VMI's own inject=true label
		{"istio-1.30-multus-rev-canary", map[string]string{"istio.io/rev": "canary"}, true},
		{"istio-1.30-multus-rev-canary", map[string]string{"istio-injection": "enabled"}, false},
		{"maistra-2.5", map[string]string{"maistra.io/member-of": "istio-system"}, true},
		{"maistra-2.5", map[string]string{"istio-injection": "enabled"}, false},
	} {
		if got := Injects(readWebhooks(t, tc.dir)[0], tc.ns, inject); got != tc.injects {
			t.Errorf("%s, namespace %v: injects=%v, want %v", tc.dir, tc.ns, got, tc.injects)
		}
	}
}
