package manifests

import (
	"path/filepath"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func render(t *testing.T, overlay string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := Render(filepath.Join("..", "..", "manifests", overlay))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func managerArgs(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	d := find(objs, "Deployment", "virtmesh")
	if d == nil {
		t.Fatal("no Deployment virtmesh")
	}
	containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	return args
}

// Every overlay renders, and each differs from the default as documented.
func TestOverlays(t *testing.T) {
	def := render(t, "default")
	for _, want := range [][2]string{{"Namespace", "virtmesh-system"}, {"Deployment", "virtmesh"}, {"Secret", "virtmesh-webhook-cert"},
		{"MutatingWebhookConfiguration", "virtmesh"}, {"NetworkPolicy", "virtmesh"}, {"PodDisruptionBudget", "virtmesh"},
		{"Service", "virtmesh-webhook"}, {"Service", "virtmesh-metrics"}, {"ClusterRole", "virtmesh-manager"}} {
		if find(def, want[0], want[1]) == nil {
			t.Errorf("default: no %s %s", want[0], want[1])
		}
	}
	if !slices.Contains(managerArgs(t, def), "--cert-rotation") {
		t.Error("default: the manager does not rotate its own certificate")
	}
	for _, o := range def {
		ns := o.GetNamespace()
		// Only the Role (and its binding) that reads Istio's injector ConfigMaps lives in Istio's namespace.
		istio := ns == "istio-system" && (o.GetKind() == "Role" || o.GetKind() == "RoleBinding") && o.GetName() == "virtmesh-manager"
		if ns != "" && ns != "virtmesh-system" && !istio {
			t.Errorf("default: %s %s in namespace %q", o.GetKind(), o.GetName(), ns)
		}
	}

	cm := render(t, "cert-manager")
	if find(cm, "Certificate", "virtmesh-webhook-cert") == nil || find(cm, "Issuer", "virtmesh-selfsigned") == nil {
		t.Error("cert-manager: no Certificate or Issuer")
	}
	if find(cm, "Secret", "virtmesh-webhook-cert") != nil {
		t.Error("cert-manager: ships the Secret cert-manager creates")
	}
	if args := managerArgs(t, cm); !slices.Contains(args, "--cert-rotation=false") || slices.Contains(args, "--cert-rotation") {
		t.Errorf("cert-manager: virtmesh still rotates its certificate: %v", args)
	}
	if ann := find(cm, "MutatingWebhookConfiguration", "virtmesh").GetAnnotations()["cert-manager.io/inject-ca-from"]; ann != "virtmesh-system/virtmesh-webhook-cert" {
		t.Errorf("cert-manager: inject-ca-from = %q", ann)
	}

	prom := render(t, "prometheus")
	if find(prom, "ServiceMonitor", "virtmesh") == nil || len(prom) != len(def)+1 {
		t.Errorf("prometheus: want the default objects and a ServiceMonitor, got %d objects", len(prom))
	}
}
