package controllers

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// appliedService applies want as virtmesh does to a fake API server that
// tracks managed fields, and returns the stored Service and the client.
func appliedService(t *testing.T, want *corev1.Service) (*corev1.Service, client.Client) {
	t.Helper()
	ctx := context.Background()
	c := ssaClient()
	if err := c.Apply(ctx, serviceApplyConfiguration(want), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
	stored := &corev1.Service{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(want), stored); err != nil {
		t.Fatal(err)
	}
	return stored, c
}

// isApplied is serviceApplied, checked against the resync path's
// fingerprinting cache, both cold and warm, which must always agree with it.
func isApplied(t *testing.T, have *corev1.Service, want *corev1ac.ServiceApplyConfiguration) bool {
	t.Helper()
	direct := serviceApplied(have, want)
	var c appliedCache
	if cold := c.applied(have, want); cold != direct {
		t.Errorf("appliedCache (cold) says %v, serviceApplied %v", cold, direct)
	}
	if warm := c.applied(have, want); warm != direct {
		t.Errorf("appliedCache (warm) says %v, serviceApplied %v", warm, direct)
	}
	return direct
}

func TestServiceApplied(t *testing.T) {
	ctx := context.Background()
	want, _ := DesiredService("vms", "web", []Member{vm("a", port("http", 8080, "")), vm("b", port("grpc", 9090, ""))})
	stored, c := appliedService(t, want)
	if !isApplied(t, stored, serviceApplyConfiguration(want)) {
		t.Fatalf("a Service just applied looks stale:\n%+v", stored.ManagedFields)
	}
	// What the API server defaults, and someone else's owner reference and
	// annotation, are not virtmesh's business: still applied.
	other := stored.DeepCopy()
	other.Spec.ClusterIP = "10.0.0.7"
	other.Spec.SessionAffinity = corev1.ServiceAffinityNone
	other.Annotations = map[string]string{"example.com/note": "x"}
	other.OwnerReferences = append(other.OwnerReferences, metav1.OwnerReference{APIVersion: "example.com/v1", Kind: "Thing", Name: "t", UID: "t"})
	if err := c.Update(ctx, other, client.FieldOwner("someone-else")); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(want), other); err != nil {
		t.Fatal(err)
	}
	if !isApplied(t, other, serviceApplyConfiguration(want)) {
		t.Fatal("defaulted fields or a foreign owner made the Service look stale")
	}
	for name, edit := range map[string]func(*corev1.Service){
		"port changed":       func(s *corev1.Service) { s.Spec.Ports[0].Port = 8081 },
		"appProtocol gone":   func(s *corev1.Service) { s.Spec.Ports[0].AppProtocol = nil },
		"selector changed":   func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "other"} },
		"owner missing":      func(s *corev1.Service) { s.OwnerReferences = s.OwnerReferences[1:] },
		"owner made control": func(s *corev1.Service) { s.OwnerReferences[0].Controller = ptr.To(true) },
		"label removed":      func(s *corev1.Service) { delete(s.Labels, mesh.ManagedByLabel) },
	} {
		s, c := appliedService(t, want)
		edit(s)
		if err := c.Update(ctx, s, client.FieldOwner("someone-else")); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(want), s); err != nil {
			t.Fatal(err)
		}
		if isApplied(t, s, serviceApplyConfiguration(want)) {
			t.Errorf("%s: not noticed", name)
		}
	}
	// Another set of members is another Service.
	more, _ := DesiredService("vms", "web", []Member{vm("a", port("http", 8080, ""))})
	if isApplied(t, stored, serviceApplyConfiguration(more)) {
		t.Error("a member leaving was not noticed")
	}
}

func TestMigrateFieldOwner(t *testing.T) {
	ctx := context.Background()
	want, _ := DesiredService("vms", "web", []Member{vm("a", port("http", 8080, ""))})
	c := ssaClient()
	old := createdByVirtmesh(t, c, want) // as virtmesh before server-side apply wrote it

	if serviceApplied(old, serviceApplyConfiguration(want)) {
		t.Fatal("fields written by Create counted as applied")
	}
	migrated, err := migrateFieldOwner(ctx, c, old)
	if err != nil || !migrated {
		t.Fatalf("migrated=%v err=%v", migrated, err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(want), old); err != nil {
		t.Fatal(err)
	}
	for _, e := range old.ManagedFields {
		if e.Manager == FieldOwner && e.Operation != metav1.ManagedFieldsOperationApply {
			t.Fatalf("an Update entry of %s is left: %+v", FieldOwner, old.ManagedFields)
		}
	}
	if !serviceApplied(old, serviceApplyConfiguration(want)) {
		t.Fatalf("after migration the Service should read as applied: %+v", old.ManagedFields)
	}
	if again, err := migrateFieldOwner(ctx, c, old); err != nil || again {
		t.Fatalf("a second migration sent a patch (%v, %v)", again, err)
	}
}
