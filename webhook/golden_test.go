package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// Golden files, Istio style: testdata/<case>.yaml holds the Namespace and the
// VMI as a VM owner wrote it; <case>.mutated.yaml the VMI as stored after the
// webhook's patch; <case>.warnings.txt what the owner is told. Refresh them
// with REFRESH_GOLDEN=true go test ./webhook/.
var refreshGolden = os.Getenv("REFRESH_GOLDEN") == "true"

// goldenConfigs names the cases that run with a non-default configuration.
var goldenConfigs = map[string]func(*Config){
	"bridge-deny":    func(c *Config) { c.BridgePolicy = BridgeDeny },
	"ambient-ignore": func(c *Config) { c.AmbientPolicy = mesh.AmbientIgnore },
}

func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cases int
	for _, in := range inputs {
		if strings.HasSuffix(in, ".mutated.yaml") {
			continue
		}
		cases++
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) { runGolden(t, in, name) })
	}
	if cases < 25 {
		t.Fatalf("only %d golden cases; the webhook's rules need at least 25", cases)
	}
}

func runGolden(t *testing.T, in, name string) {
	ns, raw := readCase(t, in)
	cfg := DefaultConfig()
	if tweak, ok := goldenConfigs[name]; ok {
		tweak(&cfg)
	}
	h := &Handler{Config: cfg, NamespaceLabels: func(context.Context, string) (map[string]string, error) { return ns.Labels, nil }}

	mutated, report := admit(t, h, ns.Name, raw)
	compareGolden(t, strings.TrimSuffix(in, ".yaml")+".mutated.yaml", toYAML(t, mutated))
	compareGolden(t, strings.TrimSuffix(in, ".yaml")+".warnings.txt", []byte(report))

	// Idempotence: the stored VMI, admitted again (reinvocation), is not changed.
	again, _ := admit(t, h, ns.Name, mutated)
	if !bytes.Equal(normalize(t, again), normalize(t, mutated)) {
		t.Fatalf("second admission changed the VMI:\n%s", toYAML(t, again))
	}
}

// admit runs one CREATE admission and returns the object with the response's
// patch applied to the raw request object, and a report of the verdict.
func admit(t *testing.T, h *Handler, ns string, raw []byte) ([]byte, string) {
	t.Helper()
	resp := h.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "golden", Operation: admissionv1.Create, Namespace: ns,
		Resource: metav1.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachineinstances"},
		Object:   runtime.RawExtension{Raw: raw},
	}})
	var report strings.Builder
	if !resp.Allowed {
		report.WriteString("DENIED: " + resp.Result.Message + "\n")
	}
	for _, w := range resp.Warnings {
		report.WriteString(w + "\n")
	}
	if len(resp.Patches) == 0 {
		return raw, report.String()
	}
	patch, err := json.Marshal(resp.Patches)
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decoded.Apply(raw)
	if err != nil {
		t.Fatalf("patch does not apply to the raw object: %v\n%s", err, patch)
	}
	return out, report.String()
}

func readCase(t testing.TB, path string) (*corev1.Namespace, []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.SplitN(string(data), "\n---\n", 2)
	if len(docs) != 2 {
		t.Fatalf("%s: want a Namespace and a VMI separated by ---", path)
	}
	ns := &corev1.Namespace{}
	if err := yaml.UnmarshalStrict([]byte(docs[0]), ns); err != nil {
		t.Fatalf("%s: namespace: %v", path, err)
	}
	raw, err := yaml.YAMLToJSON([]byte(docs[1]))
	if err != nil {
		t.Fatalf("%s: VMI: %v", path, err)
	}
	return ns, raw
}

func normalize(t *testing.T, raw []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func toYAML(t *testing.T, raw []byte) []byte {
	t.Helper()
	out, err := yaml.JSONToYAML(raw)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if refreshGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (create it with REFRESH_GOLDEN=true)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s is stale (refresh with REFRESH_GOLDEN=true and review the diff):\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}
