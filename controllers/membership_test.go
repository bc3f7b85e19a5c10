package controllers

import (
	"context"
	"testing"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

// testScheme knows core Kubernetes, KubeVirt and NAD types.
func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, kubevirtv1.AddToScheme, nadv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return scheme
}

func TestEachWorkload(t *testing.T) {
	scheme := testScheme(t)
	vm := testkit.MeshVM("shop", "", "", 8080)
	vm.Namespace, vm.Annotations = "vms", map[string]string{mesh.ServiceAnnotation: "false"}
	vm.Spec.Template.ObjectMeta.Annotations = map[string]string{mesh.PortProtocolsAnnotation: "8080=http"}
	owned := testkit.VMIFor(vm)
	standalone := testkit.MeshedVMI("vms", "cache-0", "cache", 6379)
	optedOut := testkit.MeshedVMI("vms", "old", "old", 80)
	optedOut.Labels[mesh.InjectKey] = "false"
	other := testkit.MeshedVMI("elsewhere", "x", "x", 80)
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(vm, owned, standalone, optedOut, other).Build()
	ns := namespaceInfo{name: "vms", labels: map[string]string{mesh.NamespaceInjectionLabel: "enabled"}, exists: true}

	type seen struct {
		kind, name, app string
		standalone      bool
		meshed          bool
		ports           int
	}
	var got []seen
	err := eachWorkload(context.Background(), c, func(w workload) bool {
		got = append(got, seen{w.kind, w.meta.Name, w.app(), w.standalone(), w.meshed(ns, mesh.DefaultConfig()), len(w.ports())})
		return true
	}, client.InNamespace("vms"))
	if err != nil {
		t.Fatal(err)
	}
	want := []seen{
		{"VirtualMachine", "shop", "shop", true, true, 1},
		{"VirtualMachineInstance", "cache-0", "cache", true, true, 1},
		{"VirtualMachineInstance", "old", "old", true, false, 1},
		{"VirtualMachineInstance", "shop", "shop", false, true, 1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("item %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	// A VM's own annotations go over its template's.
	if a := vmWorkload(vm).annotations(); a[mesh.ServiceAnnotation] != "false" || a[mesh.PortProtocolsAnnotation] != "8080=http" {
		t.Errorf("VM annotations: %v", a)
	}
	// fn returning false stops the loop, across both kinds.
	n := 0
	if err := eachWorkload(context.Background(), c, func(workload) bool { n++; return false }); err != nil || n != 1 {
		t.Fatalf("did not stop: n=%d err=%v", n, err)
	}
	// A VM being deleted says so.
	now := metav1.Now()
	deleting := vm.DeepCopy()
	deleting.DeletionTimestamp = &now
	if !vmWorkload(deleting).deleting() || vmWorkload(vm).deleting() {
		t.Error("deleting() is wrong")
	}
}
