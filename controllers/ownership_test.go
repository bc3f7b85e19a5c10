package controllers

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

func TestOwnershipIsFieldOwnershipNotTheLabel(t *testing.T) {
	ctx := context.Background()
	members := []Member{vm("a", port("http", 8080, ""))}
	want, _ := DesiredService("vms", "web", members)

	// Someone else's Service, with virtmesh's label copied onto it.
	c := ssaClient()
	forged := want.DeepCopy()
	if err := c.Create(ctx, forged, client.FieldOwner("tenant")); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(want), forged); err != nil {
		t.Fatal(err)
	}
	if !Managed(forged) || Virtmeshs(forged) {
		t.Fatal("a copied managed-by label made a Service virtmesh's")
	}

	// virtmesh's own: created, then migrated, then changed by someone else.
	c = ssaClient()
	if err := c.Create(ctx, want.DeepCopy(), client.FieldOwner(FieldOwner)); err != nil {
		t.Fatal(err)
	}
	mine := &corev1.Service{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(want), mine); err != nil {
		t.Fatal(err)
	}
	if !Virtmeshs(mine) || takenOverBy(mine) != "" {
		t.Fatalf("virtmesh's own Service: owned=%v takenOverBy=%q", Virtmeshs(mine), takenOverBy(mine))
	}
	mine.Annotations = map[string]string{"note": "harmless"}
	if err := c.Update(ctx, mine, client.FieldOwner("kubectl-annotate")); err != nil {
		t.Fatal(err)
	}
	if by := takenOverBy(mine); by != "" {
		t.Fatalf("an annotation counted as a take-over by %q", by)
	}
	mine.Spec.Selector = map[string]string{mesh.AppLabel: "web-v2"}
	if err := c.Update(ctx, mine, client.FieldOwner("team-b")); err != nil {
		t.Fatal(err)
	}
	if by := takenOverBy(mine); by != "team-b" {
		t.Fatalf("a new selector was not noticed (%q)", by)
	}

	// Released: the selector stays, virtmesh's label, owners and fields go.
	if err := release(ctx, c, mine); err != nil {
		t.Fatal(err)
	}
	got := &corev1.Service{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(want), got); err != nil {
		t.Fatal(err)
	}
	if Managed(got) || Virtmeshs(got) || len(got.OwnerReferences) != 0 || got.Spec.Selector[mesh.AppLabel] != "web-v2" ||
		len(got.Spec.Ports) != 1 || got.Annotations["note"] != "harmless" {
		t.Fatalf("after release: %+v", got)
	}
	for _, e := range got.ManagedFields {
		if e.Manager == FieldOwner {
			t.Fatalf("virtmesh still owns fields: %+v", got.ManagedFields)
		}
	}
}

// The scan over the bytes answers as decoding does, for every path and
// field set, and hands anything unusual to the decoder.
func TestScanFieldsAgreesWithDecoding(t *testing.T) {
	sets := []string{
		`{}`,
		`{"f:metadata":{"f:labels":{".":{},"f:app.kubernetes.io/managed-by":{}},"f:ownerReferences":{"k:{\"uid\":\"x\"}":{}}},"f:spec":{"f:ports":{"k:{\"port\":8080,\"protocol\":\"TCP\"}":{".":{},"f:name":{}}},"f:selector":{}}}`,
		` { "f:spec" : { "f:selector" : { } } , "f:metadata" : { } } `,
		`{"f:metadata":{"f:annotations":{"f:note":{}}}}`,
		`{"f:spec":{"f:selector":{}},"f:spec2":{"f:ports":{}}}`,
		`{"f:spec":{"f:ports":{}}}`,
	}
	paths := [][]string{
		{"f:metadata", "f:labels", "f:app.kubernetes.io/managed-by"},
		{"f:spec", "f:selector"},
		{"f:spec", "f:ports"},
		{"f:metadata"},
		{"f:spec", "f:ports", "f:name"},
	}
	for _, set := range sets {
		e := metav1.ManagedFieldsEntry{FieldsV1: &metav1.FieldsV1{Raw: []byte(set)}}
		for _, path := range paths {
			fields, ok := parseFields(e)
			want := ok && has(fields, path...)
			got, scanned := scanFields([]byte(set), path)
			if !scanned || got != want || owns(e, path...) != want {
				t.Errorf("%s in %s: scanned %v (%v), decoded %v", path, set, got, scanned, want)
			}
		}
	}
	// A key written with escapes is decoded before it is compared.
	escaped := `{"f:sp\u0065c":{"f:selector":{}}}`
	if found, scanned := scanFields([]byte(escaped), []string{"f:spec", "f:selector"}); !scanned || !found {
		t.Errorf("%s: scanned %v, found %v", escaped, scanned, found)
	}
	// Anything that is not a field set goes to the decoder.
	for _, odd := range []string{`{"f:spec":[1]}`, `{"f:spec":{}`, `[]`, ``, `{"f:spec\":{}}`,
		`{"f:spec":{"f:selector":{}}}garbage`, `{"f:spec":{"f:selector":{}},"f:spec":{}}`} {
		e := metav1.ManagedFieldsEntry{FieldsV1: &metav1.FieldsV1{Raw: []byte(odd)}}
		if _, scanned := scanFields([]byte(odd), []string{"f:spec", "f:selector"}); scanned {
			t.Errorf("%s was scanned", odd)
		}
		fields, ok := parseFields(e)
		if owns(e, "f:spec", "f:selector") != (ok && has(fields, "f:spec", "f:selector")) {
			t.Errorf("%s: owns disagrees with decoding", odd)
		}
	}
}
