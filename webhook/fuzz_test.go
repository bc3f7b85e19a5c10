package webhook

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http/httptest"
	"reflect"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// addGoldenSeeds seeds a fuzzer with every golden input VMI.
func addGoldenSeeds(f *testing.F, add func(raw []byte)) {
	inputs := goldenInputs(f)
	for _, name := range slices.Sorted(maps.Keys(inputs)) {
		_, raw, _ := parseCase(f, name, inputs[name])
		add(raw)
	}
}

// fuzzEnv is the namespace (labelled with the non-empty values) and the
// webhook configuration a fuzzer's inputs name.
func fuzzEnv(injection, rev, dataplane string, deny bool) (Namespace, Config) {
	ns := Namespace{Name: "vms", Labels: map[string]string{}}
	for k, v := range map[string]string{"istio-injection": injection, "istio.io/rev": rev, "istio.io/dataplane-mode": dataplane} {
		if v != "" {
			ns.Labels[k] = v
		}
	}
	cfg := DefaultConfig()
	if deny {
		cfg.BridgePolicy = BridgeDeny
	}
	return ns, cfg
}

// FuzzMutateVMI: no panic; mutating twice equals mutating once; the result
// still encodes and decodes as a VMI.
func FuzzMutateVMI(f *testing.F) {
	addGoldenSeeds(f, func(raw []byte) {
		f.Add(raw, "enabled", "", "ambient", false)
		f.Add(raw, "", "canary", "", true)
	})
	f.Fuzz(func(t *testing.T, raw []byte, injection, rev, dataplane string, deny bool) {
		vmi := &kubevirtv1.VirtualMachineInstance{}
		if json.Unmarshal(raw, vmi) != nil {
			return
		}
		ns, cfg := fuzzEnv(injection, rev, dataplane, deny)
		first := MutateVMI(vmi, Env{Namespace: ns}, mesh.DefaultConfig(), cfg)
		once := vmi.DeepCopy()
		second := MutateVMI(vmi, Env{Namespace: ns}, mesh.DefaultConfig(), cfg)
		if first.Denied != second.Denied {
			t.Fatalf("verdict changed on the second run: %+v then %+v", first, second)
		}
		if len(second.Changes) != 0 || !reflect.DeepEqual(once, vmi) {
			t.Fatalf("second run changed the VMI: %v", second.Changes)
		}
		for _, c := range first.Changes {
			key := map[Change]string{ChangeApp: mesh.AppLabel, ChangeVersion: mesh.VersionLabel}[c]
			if errs := validation.IsValidLabelValue(vmi.Labels[key]); key != "" && len(errs) > 0 {
				t.Fatalf("virtmesh set label %s=%q, which the API server refuses: %v", key, vmi.Labels[key], errs)
			}
		}
		out, err := json.Marshal(vmi)
		if err != nil {
			t.Fatalf("mutated VMI does not encode: %v", err)
		}
		if err := json.Unmarshal(out, &kubevirtv1.VirtualMachineInstance{}); err != nil {
			t.Fatalf("mutated VMI does not decode: %v", err)
		}
	})
}

// FuzzServeHTTP: any body gets an AdmissionReview answer, never a panic.
func FuzzServeHTTP(f *testing.F) {
	addGoldenSeeds(f, func(raw []byte) { f.Add(reviewBody(f, raw)) })
	f.Add([]byte("{{{"))
	f.Add([]byte(`{"request":{"object":null}}`))
	wh := &admission.Webhook{Handler: &Handler{Mesh: mesh.DefaultConfig(), Config: DefaultConfig(), NamespaceLabels: meshedNamespace}}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		wh.ServeHTTP(rec, httptest.NewRequest("POST", "/", bytes.NewReader(body)))
		if rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("response is not JSON: %v", err)
		}
	})
}
