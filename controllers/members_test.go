package controllers

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

func TestMembersCollapseReplicaSetsAndPools(t *testing.T) {
	scheme := testScheme(t)
	index := func(o client.Object) []string {
		if req, ok := appOf(o); ok {
			return []string{req.Name}
		}
		return nil
	}
	var objs []client.Object
	rsRef := metav1.OwnerReference{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstanceReplicaSet", Name: "cache", UID: "rs-uid", Controller: ptr.To(true)}
	for _, name := range []string{"cache-a", "cache-b", "cache-c"} {
		vmi := testkit.MeshedVMI("vms", name, "cache", 6379)
		vmi.OwnerReferences = []metav1.OwnerReference{rsRef}
		objs = append(objs, vmi)
	}
	poolRef := metav1.OwnerReference{APIVersion: "pool.kubevirt.io/v1beta1", Kind: "VirtualMachinePool", Name: "web", UID: "pool-uid", Controller: ptr.To(true)}
	for i, name := range []string{"web-0", "web-1"} {
		vm := testkit.MeshVM(name, "", "", int32(8080+i))
		vm.Namespace, vm.OwnerReferences = "vms", []metav1.OwnerReference{poolRef}
		objs = append(objs, vm)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).
		WithIndex(&kubevirtv1.VirtualMachine{}, appIndex, index).WithIndex(&kubevirtv1.VirtualMachineInstance{}, appIndex, index).Build()
	r := &ServiceReconciler{Client: c, Mesh: mesh.DefaultConfig()}
	ns := namespaceInfo{name: "vms", labels: map[string]string{mesh.NamespaceInjectionLabel: "enabled"}, exists: true}

	cache, err := r.members(context.Background(), ns, "cache")
	if err != nil {
		t.Fatal(err)
	}
	if len(cache) != 1 || cache[0].Kind != "VirtualMachineInstanceReplicaSet" || cache[0].UID != "rs-uid" {
		t.Fatalf("replica set members: %+v", cache)
	}
	web, err := r.members(context.Background(), ns, "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(web) != 1 || web[0].Kind != "VirtualMachinePool" || web[0].apiVersion() != "pool.kubevirt.io/v1beta1" || len(web[0].Ports) != 2 {
		t.Fatalf("pool members: %+v", web)
	}
	svc, _ := DesiredService("vms", "web", web)
	if len(svc.OwnerReferences) != 1 || svc.OwnerReferences[0].APIVersion != "pool.kubevirt.io/v1beta1" || len(svc.Spec.Ports) != 2 {
		t.Fatalf("the pool's Service: %+v %+v", svc.OwnerReferences, svc.Spec.Ports)
	}
}

// A VM out of the mesh by its template (its namespace just left the mesh)
// stays a member while its running VMI is in the mesh by its own labels;
// not once that VMI has ended, nor when the VMI is pinned out.
func TestMembersKeepAVMWhoseRunningVMIIsMeshed(t *testing.T) {
	scheme := testScheme(t)
	index := func(o client.Object) []string {
		if req, ok := appOf(o); ok {
			return []string{req.Name}
		}
		return nil
	}
	ns := namespaceInfo{name: "vms", labels: map[string]string{}, exists: true} // istio-injection removed
	for name, tc := range map[string]struct {
		edit func(*kubevirtv1.VirtualMachineInstance)
		want int
	}{
		"its VMI runs with the mesh labels": {func(*kubevirtv1.VirtualMachineInstance) {}, 1},
		"its VMI ended":                     {func(v *kubevirtv1.VirtualMachineInstance) { v.Status.Phase = kubevirtv1.Succeeded }, 0},
		"its VMI is pinned out": {func(v *kubevirtv1.VirtualMachineInstance) {
			v.Labels[mesh.InjectKey], v.Annotations[mesh.InjectKey] = "false", "false"
		}, 0},
		"no VMI": {nil, 0},
		"a VMI of that name another VM controls (its VM re-created since)": {func(v *kubevirtv1.VirtualMachineInstance) {
			v.OwnerReferences[0].UID = "another-vm-uid"
		}, 0},
	} {
		vm := testkit.MeshVM("web", "", "", 8080)
		vm.Namespace, vm.UID = "vms", "vm-uid"
		objs := []client.Object{vm}
		if tc.edit != nil {
			vmi := testkit.MeshedVMI("vms", "web", "web", 8080)
			vmi.Status.Phase = kubevirtv1.Running
			vmi.OwnerReferences = []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: "web", UID: vm.UID, Controller: ptr.To(true)}}
			tc.edit(vmi)
			objs = append(objs, vmi)
		}
		c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).
			WithIndex(&kubevirtv1.VirtualMachine{}, appIndex, index).WithIndex(&kubevirtv1.VirtualMachineInstance{}, appIndex, index).Build()
		r := &ServiceReconciler{Client: c, Mesh: mesh.DefaultConfig()}
		got, err := r.members(context.Background(), ns, "web")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.want || (tc.want == 1 && (got[0].Kind != "VirtualMachine" || got[0].UID != vm.UID || len(got[0].Ports) != 1)) {
			t.Errorf("%s: members = %+v, want %d (the VM)", name, got, tc.want)
		}
	}
}
