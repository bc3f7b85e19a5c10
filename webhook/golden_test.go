package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	gojsonpatch "gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

// Golden files, Istio style: testdata/<case>.yaml holds the Namespace and the
// VMI as a VM owner wrote it; <case>.mutated.yaml the VMI as stored after the
// webhook's patch; <case>.warnings.txt what the owner is told. One case's
// input is not in testdata: seed 004 (testkit.Seed004YAML), which the demo,
// the benchmarks and the load programs build on too. Refresh the outputs with
// REFRESH_GOLDEN=true go test ./webhook/.
var refreshGolden = os.Getenv("REFRESH_GOLDEN") == "true"

// goldenConfigs names the cases that run with a non-default configuration.
var goldenConfigs = map[string]func(*mesh.Config, *Config){
	"bridge-deny":                    func(_ *mesh.Config, c *Config) { c.BridgePolicy = BridgeDeny },
	"bridge-deny-kubevirt-defaulted": func(_ *mesh.Config, c *Config) { c.BridgePolicy = BridgeDeny },
	"bridge-deny-vm-declares-bridge": func(_ *mesh.Config, c *Config) { c.BridgePolicy = BridgeDeny },
	"ambient-ignore":                 func(m *mesh.Config, _ *Config) { m.AmbientPolicy = mesh.AmbientIgnore },
}

const goldenDir = "testdata"

func TestGolden(t *testing.T) {
	cases := goldenInputs(t)
	if len(cases) < 25 {
		t.Fatalf("only %d golden cases; the webhook's rules need at least 25", len(cases))
	}
	for _, name := range slices.Sorted(maps.Keys(cases)) {
		t.Run(name, func(t *testing.T) { runGolden(t, name, cases[name]) })
	}
}

// TestGoldenFilesHaveInputs fails on a stale golden file: an output whose
// input is gone, or (unless REFRESH_GOLDEN creates them) an input without its
// outputs.
func TestGoldenFilesHaveInputs(t *testing.T) {
	inputs := goldenInputs(t)
	problems, err := goldenProblems(goldenDir, slices.Collect(maps.Keys(inputs)), !refreshGolden)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	// A renamed case would otherwise run with the default configuration.
	for name := range goldenConfigs {
		if _, ok := inputs[name]; !ok {
			t.Errorf("goldenConfigs names %q, which is not a golden case", name)
		}
	}
}

func TestGoldenProblems(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"a.yaml", "a.mutated.yaml", "a.warnings.txt", "seed.mutated.yaml", "seed.warnings.txt",
		"gone.mutated.yaml", "b.yaml", "b.mutated.yaml", "notes.md"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := goldenProblems(dir, []string{"a", "b", "seed"}, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"notes.md: neither", "gone.mutated.yaml: stale", "b.warnings.txt: missing"}
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, w) }) {
			t.Errorf("no problem %q in:\n%s", w, strings.Join(got, "\n"))
		}
	}
	if got, _ := goldenProblems(dir, []string{"a", "b", "seed"}, false); len(got) != 2 {
		t.Errorf("without requiring outputs: %q, want the 2 stale files only", got)
	}
}

// goldenInputs returns every case's input by case name: testdata/<case>.yaml
// and seed 004.
func goldenInputs(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(goldenDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	inputs := map[string][]byte{testkit.Seed004Case: testkit.Seed004YAML}
	for _, path := range paths {
		name, ok := inputCase(filepath.Base(path))
		if !ok {
			continue
		}
		if name == testkit.Seed004Case {
			t.Fatalf("%s: seed 004's input is internal/testkit/seed004.yaml; delete this copy", path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		inputs[name] = data
	}
	return inputs
}

// Golden outputs, by file suffix.
var goldenOutputs = []string{".mutated.yaml", ".warnings.txt"}

// inputCase reports whether file is a golden input, and its case name.
func inputCase(file string) (string, bool) {
	for _, suffix := range goldenOutputs {
		if strings.HasSuffix(file, suffix) {
			return "", false
		}
	}
	return strings.CutSuffix(file, ".yaml")
}

// goldenProblems lists what is stale in dir, given the names of every case:
// outputs of no case, files that are neither input nor output, and, when
// requireOutputs, cases without their outputs.
func goldenProblems(dir string, cases []string, requireOutputs bool) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var problems []string
	have := map[string]bool{}
	for _, e := range entries {
		file := e.Name()
		have[file] = true
		if e.IsDir() && file == "fuzz" {
			continue // go test -fuzz's regression inputs
		}
		if _, ok := inputCase(file); ok {
			continue
		}
		name, ok := outputCase(file)
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s: neither a golden input (<case>.yaml) nor an output", filepath.Join(dir, file)))
		case !slices.Contains(cases, name):
			problems = append(problems, fmt.Sprintf("%s: stale, no case %q has it as output (its input %s.yaml is gone)",
				filepath.Join(dir, file), name, name))
		}
	}
	for _, name := range cases {
		for _, suffix := range goldenOutputs {
			if requireOutputs && !have[name+suffix] {
				problems = append(problems, fmt.Sprintf("%s: missing for case %q (create it with REFRESH_GOLDEN=true)",
					filepath.Join(dir, name+suffix), name))
			}
		}
	}
	return problems, nil
}

// outputCase reports whether file is a golden output, and its case name.
func outputCase(file string) (string, bool) {
	for _, suffix := range goldenOutputs {
		if name, ok := strings.CutSuffix(file, suffix); ok {
			return name, true
		}
	}
	return "", false
}

func runGolden(t *testing.T, name string, input []byte) {
	ns, raw, vm := parseCase(t, name, input)
	meshCfg, cfg := mesh.DefaultConfig(), DefaultConfig()
	if tweak, ok := goldenConfigs[name]; ok {
		tweak(&meshCfg, &cfg)
	}
	h := &Handler{Mesh: meshCfg, Config: cfg, NamespaceLabels: func(context.Context, string) (map[string]string, error) { return ns.Labels, nil },
		VirtualMachines: func(_ context.Context, namespace, name string) (*kubevirtv1.VirtualMachine, error) {
			if vm == nil || vm.Name != name {
				return nil, apierrors.NewNotFound(kubevirtv1.Resource("virtualmachines"), name)
			}
			return vm, nil
		}}

	mutated, report := admit(t, h, ns.Name, raw)
	compareGolden(t, filepath.Join(goldenDir, name+".mutated.yaml"), toYAML(t, mutated))
	compareGolden(t, filepath.Join(goldenDir, name+".warnings.txt"), []byte(report))

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
	return applyPatch(t, raw, resp.Patches), report.String()
}

// applyPatch applies a webhook's patch to raw (raw itself when there is
// none), as the API server does.
func applyPatch(t testing.TB, raw []byte, ops []gojsonpatch.Operation) []byte {
	t.Helper()
	if len(ops) == 0 {
		return raw
	}
	patch, err := json.Marshal(ops)
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
	return out
}

// parseCase splits a golden input into its Namespace, its VMI as JSON and,
// for a VMI a VirtualMachine owns, optionally that VirtualMachine (a third
// document), as the webhook reads it from the API server.
func parseCase(t testing.TB, name string, data []byte) (*corev1.Namespace, []byte, *kubevirtv1.VirtualMachine) {
	t.Helper()
	docs := strings.SplitN(string(data), "\n---\n", 3)
	if len(docs) < 2 {
		t.Fatalf("case %s: want a Namespace and a VMI (and optionally its VirtualMachine) separated by ---", name)
	}
	var vm *kubevirtv1.VirtualMachine
	if len(docs) == 3 {
		vm = &kubevirtv1.VirtualMachine{}
		if err := yaml.UnmarshalStrict([]byte(docs[2]), vm); err != nil {
			t.Fatalf("case %s: VirtualMachine: %v", name, err)
		}
	}
	ns := &corev1.Namespace{}
	if err := yaml.UnmarshalStrict([]byte(docs[0]), ns); err != nil {
		t.Fatalf("case %s: namespace: %v", name, err)
	}
	raw, err := yaml.YAMLToJSON([]byte(docs[1]))
	if err != nil {
		t.Fatalf("case %s: VMI: %v", name, err)
	}
	return ns, raw, vm
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
