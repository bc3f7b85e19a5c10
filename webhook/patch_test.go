package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"gomodules.xyz/jsonpatch/v2"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// wholeObjectPatch is the patch between the two whole objects encoded
// through the same Go types: what the webhook answered before it diffed only
// what MutateVMI can change.
func wholeObjectPatch(t *testing.T, original, mutated *kubevirtv1.VirtualMachineInstance) []jsonpatch.Operation {
	t.Helper()
	was, err := json.Marshal(original)
	if err != nil {
		t.Fatal(err)
	}
	is, err := json.Marshal(mutated)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := jsonpatch.CreatePatch(was, is)
	if err != nil {
		t.Fatal(err)
	}
	return ops
}

// applyOps applies ops to raw and encodes the result with its keys sorted.
func applyOps(t *testing.T, raw []byte, ops []jsonpatch.Operation) []byte {
	t.Helper()
	out := applyPatch(t, raw, ops)
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	out, _ = json.Marshal(v) // keys sorted
	return out
}

// FuzzPatchEqualsWholeObjectDiff: the webhook's patch, computed from what
// MutateVMI can change, turns the request object into the same object as
// the patch between the whole objects would, for every golden input under
// every namespace labelling (and whatever else the fuzzer finds).
func FuzzPatchEqualsWholeObjectDiff(f *testing.F) {
	addGoldenSeeds(f, func(raw []byte) {
		f.Add(raw, "enabled", "", "", false)
		f.Add(raw, "", "canary", "", true)
		f.Add(raw, "enabled", "", "ambient", false)
		f.Add(raw, "", "", "", false)
	})
	f.Add([]byte(`{"metadata":{"name":"a","labels":{"a/b~c":"x"},"annotations":{"sidecar.istio.io/inject":""}},"spec":{"domain":{"devices":{}}}}`),
		"enabled", "", "", false)
	f.Add([]byte(`{"metadata":{"name":"b"},"spec":{"networks":[{"name":"vlan","multus":{"networkName":"vlan10"}},{"name":"default","pod":{}}],`+
		`"domain":{"devices":{"interfaces":[{"name":"vlan","bridge":{}},{"name":"default","bridge":{},"ports":[{"port":80}]}]}}}}`),
		"enabled", "", "", false)
	f.Fuzz(func(t *testing.T, raw []byte, injection, rev, dataplane string, deny bool) {
		vmi := &kubevirtv1.VirtualMachineInstance{}
		if json.Unmarshal(raw, vmi) != nil {
			return
		}
		ns, cfg := fuzzEnv(injection, rev, dataplane, deny)
		original, was := vmi.DeepCopy(), snapshot(vmi)
		MutateVMI(vmi, Env{Namespace: ns}, mesh.DefaultConfig(), cfg)
		ops, err := was.patch(vmi)
		if err != nil {
			t.Fatal(err)
		}
		// Applied to the typed encoding: the raw object may hold what
		// neither patch can apply to (a null where an object is).
		base, err := json.Marshal(original)
		if err != nil {
			t.Fatal(err)
		}
		got, want := applyOps(t, base, ops), applyOps(t, base, wholeObjectPatch(t, original, vmi))
		if !bytes.Equal(got, want) {
			t.Fatalf("patch %v\ngives %s\nwant  %s", ops, got, want)
		}
	})
}

// The patch's size depends on what changed, not on the VMI's size.
func TestPatchOfAHugeVMIIsSmall(t *testing.T) {
	vmi := &kubevirtv1.VirtualMachineInstance{}
	vmi.Name, vmi.Namespace, vmi.Annotations = "big", "vms", map[string]string{}
	for i := range 20000 {
		vmi.Annotations[fmt.Sprintf("example.com/k%d", i)] = "some value"
	}
	was := snapshot(vmi)
	res := MutateVMI(vmi, Env{Namespace: Namespace{Name: "vms", Labels: map[string]string{"istio-injection": "enabled"}}},
		mesh.DefaultConfig(), DefaultConfig())
	if res.Denied || len(res.Changes) == 0 {
		t.Fatalf("not mutated: %+v", res)
	}
	ops, err := was.patch(vmi)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(ops)
	if len(out) > 4096 {
		t.Errorf("patch of %d bytes: %s", len(out), out)
	}
	for _, op := range ops {
		if op.Path == "/metadata/annotations" {
			t.Errorf("the whole annotations map rewritten: %v", op.Operation)
		}
	}
}
