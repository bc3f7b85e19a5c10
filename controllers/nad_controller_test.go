package controllers

import (
	"context"
	"os"
	"strings"
	"testing"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/yaml"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

func readFixture(t *testing.T, dir, file string, into any) {
	t.Helper()
	raw, err := os.ReadFile("../tests/testdata/istio-injectors/" + dir + "/" + file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(strings.Split(string(raw), "\n---")[0]), into); err != nil {
		t.Fatal(err)
	}
}

// A shared NAD virtmesh once created itself (per-namespace days, say) is
// never deleted while an injector references it: every namespace needs it.
func TestNeverDeletesASharedNADInUse(t *testing.T) {
	ctx := context.Background()
	scheme := testScheme(t)
	cm, mwc := &corev1.ConfigMap{}, &admissionregistrationv1.MutatingWebhookConfiguration{}
	readFixture(t, "istio-1.30-multus", "configmap.yaml", cm)
	readFixture(t, "istio-1.30-multus", "mutatingwebhookconfiguration.yaml", mwc)
	c := fake.NewClientBuilder().WithScheme(scheme).WithReturnManagedFields().
		WithObjects(cm, mwc, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}).Build()
	// virtmesh's own NAD in namespace default, which is not in the mesh.
	if err := c.Create(ctx, DesiredNAD("default", "istio-cni"), client.FieldOwner(FieldOwner)); err != nil {
		t.Fatal(err)
	}
	r := &NADReconciler{Client: c, Mesh: mesh.DefaultConfig(), Config: DefaultConfig(), Recorder: record.NewFakeRecorder(10)}
	if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: "default"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "istio-cni"}, &nadv1.NetworkAttachmentDefinition{}); err != nil {
		t.Fatalf("the shared NAD was deleted: %v", err)
	}
	// Without the injector that references it, it is virtmesh's to remove.
	if err := c.Delete(ctx, mwc); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: "default"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "istio-cni"}, &nadv1.NetworkAttachmentDefinition{}); err == nil {
		t.Fatal("virtmesh's NAD that nothing needs was kept")
	}
}
