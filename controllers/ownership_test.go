package controllers

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
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
