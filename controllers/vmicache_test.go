package controllers

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

// runningVMI is a VMI as virt-controller leaves a running one of a VM:
// everything trimVMI drops is set too.
func runningVMI(i int) *kubevirtv1.VirtualMachineInstance {
	name := fmt.Sprintf("vm-%05d", i)
	vmi := testkit.MeshedVMI("vms", name, "web", 8080, 9090)
	vmi.UID, vmi.ResourceVersion, vmi.Generation = types.UID(fmt.Sprintf("uid-%05d", i)), "12345", 3
	vmi.APIVersion, vmi.Kind = "kubevirt.io/v1", "VirtualMachineInstance"
	vmi.Labels["kubevirt.io/vm"], vmi.Labels["kubevirt.io/nodeName"], vmi.Labels[mesh.VersionLabel] = name, "node01", "v1"
	vmi.Annotations["kubevirt.io/latest-observed-api-version"] = "v1"
	vmi.Annotations["kubevirt.io/storage-observed-api-version"] = "v1"
	vmi.Annotations[mesh.ServiceAnnotation] = "true"
	vmi.OwnerReferences = []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: name,
		UID: types.UID("vm-" + name), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
	vmi.Finalizers = []string{"kubevirt.io/virtualMachineControllerFinalize", "foregroundDeleteVirtualMachine"}
	vmi.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "virt-controller", Operation: metav1.ManagedFieldsOperationUpdate}}
	vmi.Spec.Networks = append([]kubevirtv1.Network{{Name: "vlan", NetworkSource: kubevirtv1.NetworkSource{
		Multus: &kubevirtv1.MultusNetwork{NetworkName: "vlan10"}}}}, vmi.Spec.Networks...)
	vmi.Spec.Domain.Devices.Interfaces = append([]kubevirtv1.Interface{{Name: "vlan", MacAddress: "02:00:00:00:00:01",
		InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}}}, vmi.Spec.Domain.Devices.Interfaces...)
	vmi.Spec.Domain.Devices.Disks = []kubevirtv1.Disk{{Name: "root"}}
	vmi.Spec.Domain.Resources.Requests = nil
	start := metav1.NewTime(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	vmi.Status = kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Running, NodeName: "node01",
		ActivePods: map[types.UID]string{"pod-a": "node01"},
		Interfaces: []kubevirtv1.VirtualMachineInstanceNetworkInterface{{Name: "default", IP: "10.244.0.7"}},
		Conditions: []kubevirtv1.VirtualMachineInstanceCondition{
			{Type: kubevirtv1.VirtualMachineInstanceReady, Status: "True", LastTransitionTime: start},
			{Type: kubevirtv1.VirtualMachineInstanceIsMigratable, Status: "True", LastTransitionTime: start},
			{Type: kubevirtv1.VirtualMachineInstancePaused, Status: "False", Reason: "Unpaused", Message: "long"},
		},
		MigrationState: &kubevirtv1.VirtualMachineInstanceMigrationState{StartTimestamp: &start, EndTimestamp: &start,
			Completed: true, MigrationUID: "mig-1", TargetPod: "virt-launcher-" + name + "-b", SourceNode: "node02"},
	}
	return vmi
}

// Packing loses nothing trimVMI keeps: every shape unpacks to exactly the
// VMI trimVMI makes, whether unpacked anew or into an object that held
// another VMI before (the metrics' walk).
func TestPackedVMIUnpacksToTheTrimmedVMI(t *testing.T) {
	deleted := metav1.Now()
	shapes := map[string]func(*kubevirtv1.VirtualMachineInstance){
		"running":          func(*kubevirtv1.VirtualMachineInstance) {},
		"pending":          func(v *kubevirtv1.VirtualMachineInstance) { v.Status = kubevirtv1.VirtualMachineInstanceStatus{} },
		"no annotations":   func(v *kubevirtv1.VirtualMachineInstance) { v.Annotations = nil },
		"every annotation": func(v *kubevirtv1.VirtualMachineInstance) { setAll(v.Annotations) },
		"empty annotation": func(v *kubevirtv1.VirtualMachineInstance) { v.Annotations[mesh.PinnedAnnotation] = "" },
		"no labels":        func(v *kubevirtv1.VirtualMachineInstance) { v.Labels = nil },
		"deleting":         func(v *kubevirtv1.VirtualMachineInstance) { v.DeletionTimestamp = &deleted },
		"generate name":    func(v *kubevirtv1.VirtualMachineInstance) { v.GenerateName = "vm-" },
		"no owner":         func(v *kubevirtv1.VirtualMachineInstance) { v.OwnerReferences = nil },
		"no interfaces": func(v *kubevirtv1.VirtualMachineInstance) {
			v.Spec.Domain.Devices.Interfaces = nil
			v.Spec.Domain.Devices.AutoattachPodInterface = ptr.To(false)
		},
		"autoattach true": func(v *kubevirtv1.VirtualMachineInstance) {
			v.Spec.Domain.Devices.AutoattachPodInterface = ptr.To(true)
		},
		"no pod network": func(v *kubevirtv1.VirtualMachineInstance) { v.Spec.Networks = v.Spec.Networks[:1] },
		"pod interface first": func(v *kubevirtv1.VirtualMachineInstance) {
			ifaces := v.Spec.Domain.Devices.Interfaces
			ifaces[0], ifaces[1] = ifaces[1], ifaces[0]
		},
		"binding plugin": func(v *kubevirtv1.VirtualMachineInstance) {
			pod := &v.Spec.Domain.Devices.Interfaces[1]
			pod.InterfaceBindingMethod, pod.Binding = kubevirtv1.InterfaceBindingMethod{}, &kubevirtv1.PluginBinding{Name: "passt"}
		},
		"bridge on the pod network": func(v *kubevirtv1.VirtualMachineInstance) {
			v.Spec.Domain.Devices.Interfaces[1].InterfaceBindingMethod = kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}
		},
		"no ports": func(v *kubevirtv1.VirtualMachineInstance) { v.Spec.Domain.Devices.Interfaces[1].Ports = nil },
		"migrating": func(v *kubevirtv1.VirtualMachineInstance) {
			v.Status.ActivePods["pod-b"] = "node02"
			v.Status.MigrationState.Completed, v.Status.MigrationState.EndTimestamp = false, nil
		},
		"migration failed": func(v *kubevirtv1.VirtualMachineInstance) {
			v.Status.MigrationState.Completed, v.Status.MigrationState.Failed = false, true
		},
		"no conditions kept": func(v *kubevirtv1.VirtualMachineInstance) { v.Status.Conditions = v.Status.Conditions[:1] },
		"paused first": func(v *kubevirtv1.VirtualMachineInstance) {
			c := v.Status.Conditions
			c[1], c[2] = c[2], c[1]
		},
		"no type meta":        func(v *kubevirtv1.VirtualMachineInstance) { v.TypeMeta = metav1.TypeMeta{} },
		"empty active pods":   func(v *kubevirtv1.VirtualMachineInstance) { v.Status.ActivePods = map[types.UID]string{} },
		"no owner references": func(v *kubevirtv1.VirtualMachineInstance) { v.OwnerReferences = []metav1.OwnerReference{} },
		"duplicate interface names": func(v *kubevirtv1.VirtualMachineInstance) {
			ifaces := v.Spec.Domain.Devices.Interfaces
			v.Spec.Domain.Devices.Interfaces = append(ifaces, kubevirtv1.Interface{Name: ifaces[1].Name,
				InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}})
		},
		"pod network without interface": func(v *kubevirtv1.VirtualMachineInstance) {
			v.Spec.Domain.Devices.Interfaces = v.Spec.Domain.Devices.Interfaces[:1]
		},
	}
	// A scratch object that held a VMI with everything set.
	scratch := unpackVMI(packVMI(runningVMI(0)))
	scratch = scratch.DeepCopy()
	for name, edit := range shapes {
		full := runningVMI(1)
		edit(full)
		trimmed, err := trimVMI(full.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		packed, err := packVMIAny(full.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		p, ok := packed.(*packedVMI)
		if !ok {
			t.Fatalf("%s: packed as %T", name, packed)
		}
		if len(full.Status.ActivePods) == 0 {
			// Unpacked as nil; KubeVirt's field is omitempty, never sent empty.
			trimmed.(*kubevirtv1.VirtualMachineInstance).Status.ActivePods = nil
		}
		if got := unpackVMI(p); !reflect.DeepEqual(got, trimmed) {
			t.Errorf("%s:\nunpacked %+v\ntrimmed  %+v", name, got, trimmed)
		}
		unpackVMIInto(scratch, p)
		if !reflect.DeepEqual(scratch, trimmed) {
			t.Errorf("%s, unpacked into an object that held another VMI:\nunpacked %+v\ntrimmed  %+v", name, scratch, trimmed)
		}
		// Trimmed first, as the manager's transform hands it over, and packed.
		again, _ := packVMIAny(trimmed.(*kubevirtv1.VirtualMachineInstance).DeepCopy())
		if got := unpackVMI(again.(*packedVMI)); !reflect.DeepEqual(got, trimmed) {
			t.Errorf("%s, packed after trimming:\nunpacked %+v\ntrimmed  %+v", name, got, trimmed)
		}
	}
	tomb := toolscache.DeletedFinalStateUnknown{Key: "vms/x"}
	if got, _ := packVMIAny(tomb); got != tomb {
		t.Errorf("a tombstone became %v", got)
	}
}

func setAll(annotations map[string]string) {
	for _, k := range keptAnnotations {
		annotations[k] = "v-" + k
	}
}

// The informer built for VMIs stores them packed, and everything reading
// it (its store and indexer, index functions added later, event handlers)
// sees VirtualMachineInstances as trimVMI leaves them. Other types are left
// alone.
func TestVMIInformerStoresPackedHandsOutVMIs(t *testing.T) {
	if _, ok := NewInformer(&toolscache.ListWatch{}, &kubevirtv1.VirtualMachine{}, 0, toolscache.Indexers{}).(*packingInformer); ok {
		t.Fatal("VMs are packed too")
	}
	a, b := runningVMI(1), runningVMI(2)
	b.Namespace = "other"
	fw := watch.NewFake()
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (kruntime.Object, error) {
			return &kubevirtv1.VirtualMachineInstanceList{ListMeta: metav1.ListMeta{ResourceVersion: "1"},
				Items: []kubevirtv1.VirtualMachineInstance{*a.DeepCopy(), *b.DeepCopy()}}, nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return fw, nil },
	}
	inf := NewInformer(lw, &kubevirtv1.VirtualMachineInstance{}, 0,
		toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc})
	if err := inf.SetTransform(trimVMI); err != nil {
		t.Fatal(err)
	}
	// An index function as controller-runtime's field indexes are: given
	// objects of the informer's type.
	if err := inf.AddIndexers(toolscache.Indexers{"app": func(o any) ([]string, error) {
		return []string{o.(*kubevirtv1.VirtualMachineInstance).Labels[mesh.AppLabel]}, nil
	}}); err != nil {
		t.Fatal(err)
	}
	events := make(chan any, 10)
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { events <- o },
		UpdateFunc: func(_, o any) { events <- o },
		DeleteFunc: func(o any) { events <- o },
	}
	for range 2 {
		if _, err := inf.AddEventHandler(handler); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go inf.RunWithContext(ctx)
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if !toolscache.WaitForCacheSync(sctx.Done(), inf.HasSynced) {
		t.Fatalf("not synced: %d stored, last rv %q", len(inf.(*packingInformer).indexer.Indexer.List()), inf.LastSyncResourceVersion())
	}
	want, _ := trimVMI(a.DeepCopy())
	raw := inf.(*packingInformer).indexer.Indexer
	stored, _, _ := raw.GetByKey("vms/vm-00001")
	if _, ok := stored.(*packedVMI); !ok {
		t.Errorf("stored as %T", stored)
	}
	got, exists, err := inf.GetIndexer().GetByKey("vms/vm-00001")
	if err != nil || !exists || !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("GetByKey: %v %v\n%+v\nwant %+v", exists, err, got, want)
	}
	if got, exists, _ := inf.GetStore().Get(a); !exists || !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("Get: %v %+v", exists, got)
	}
	for _, read := range []func() ([]any, error){
		func() ([]any, error) { return inf.GetIndexer().ByIndex(toolscache.NamespaceIndex, "vms") },
		func() ([]any, error) { return inf.GetIndexer().ByIndex("app", "web") },
		func() ([]any, error) { return inf.GetIndexer().Index("app", a) },
		func() ([]any, error) { return inf.GetStore().List(), nil },
	} {
		items, err := read()
		if err != nil || len(items) == 0 {
			t.Errorf("read: %v %v", items, err)
		}
		for _, item := range items {
			if _, ok := item.(*kubevirtv1.VirtualMachineInstance); !ok {
				t.Errorf("read a %T", item)
			}
		}
	}
	next := func() any {
		select {
		case o := <-events:
			return o
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10 s")
			return nil
		}
	}
	// Every event reaches both handlers as a VMI.
	var first []any
	for range 4 {
		first = append(first, next())
	}
	for _, o := range first {
		if _, ok := o.(*kubevirtv1.VirtualMachineInstance); !ok {
			t.Errorf("handler got a %T", o)
		}
	}
	c := a.DeepCopy()
	c.ResourceVersion, c.Labels[mesh.AppLabel] = "2", "api"
	fw.Modify(c)
	// Both handlers get it (most often the one object; not promised).
	u1, u2 := next(), next()
	if u1.(*kubevirtv1.VirtualMachineInstance).Labels[mesh.AppLabel] != "api" || !reflect.DeepEqual(u1, u2) {
		t.Errorf("update: %+v %+v", u1, u2)
	}
	fw.Delete(c)
	if d := next(); d.(*kubevirtv1.VirtualMachineInstance).Name != "vm-00001" {
		t.Errorf("delete: %+v", d)
	}
	next()
	// The metrics' walk sees every VMI, unpacked into one object.
	var names []string
	inf.(*packingInformer).eachVMI(func(v *kubevirtv1.VirtualMachineInstance) bool {
		names = append(names, v.Namespace+"/"+v.Name)
		return true
	})
	if len(names) != 1 || names[0] != "other/vm-00002" {
		t.Errorf("walk: %v", names)
	}
}

// B/VMI is what the cache holds per VMI: whole, as the manager's cache would
// hold it trimmed, and packed (as it does).
func BenchmarkVMICacheMemory(b *testing.B) {
	for _, how := range []string{"whole", "trimmed", "packed"} {
		b.Run(how, func(b *testing.B) {
			heldPerObject(b, "B/VMI", func(i int) any {
				vmi := runningVMI(i) // as decoded: its own strings and maps
				switch how {
				case "trimmed":
					out, _ := trimVMI(vmi)
					return out
				case "packed":
					out, _ := packVMIAny(vmi)
					return out
				}
				return vmi
			})
		})
	}
}

// B/op here is what a resync costs per VMI in the packing layer: the
// informer's store updates the VMI with itself (running every index
// function on the old and the new object, which are one), then hands it to
// each controller's handler. The index functions are the ones the manager
// installs on VMIs (the namespace index and the field indexes by app and by
// running onboarding); the handlers read one label, so that only the
// packing layer's cost is counted.
func BenchmarkVMIResync(b *testing.B) {
	const vmis, handlers = 5000, 4
	field := func(f func(*kubevirtv1.VirtualMachineInstance) []string) toolscache.IndexFunc {
		return func(o any) ([]string, error) { // as controller-runtime's IndexField wraps one
			vmi := o.(*kubevirtv1.VirtualMachineInstance)
			var keys []string
			for _, v := range f(vmi) {
				keys = append(keys, vmi.Namespace+"/"+v, "__all_namespaces/"+v)
			}
			return keys, nil
		}
	}
	inf := NewInformer(&toolscache.ListWatch{}, &kubevirtv1.VirtualMachineInstance{}, 0,
		toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc})
	if err := inf.AddIndexers(toolscache.Indexers{
		"field:" + appIndex: field(func(vmi *kubevirtv1.VirtualMachineInstance) []string {
			if req, ok := appOf(vmi); ok {
				return []string{req.Name}
			}
			return nil
		}),
		"field:" + onboardingIndex: field(func(vmi *kubevirtv1.VirtualMachineInstance) []string { return onboardingRunning(vmi) }),
	}); err != nil {
		b.Fatal(err)
	}
	store := inf.(*packingInformer).indexer.Indexer // as the informer's own loop uses it: packed
	packed := make([]any, vmis)
	for i := range packed {
		vmi, _ := trimVMI(runningVMI(i))
		packed[i], _ = packVMIAny(vmi)
		if err := store.Add(packed[i]); err != nil {
			b.Fatal(err)
		}
	}
	var seen int
	hs := make([]toolscache.ResourceEventHandler, handlers)
	for n := range hs {
		hs[n] = unpackEvents(toolscache.ResourceEventHandlerFuncs{UpdateFunc: func(_, o any) {
			seen += len(o.(*kubevirtv1.VirtualMachineInstance).Labels[mesh.AppLabel])
		}})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		p := packed[i%vmis]
		if err := store.Update(p); err != nil {
			b.Fatal(err)
		}
		for _, h := range hs {
			h.OnUpdate(p, p)
		}
	}
	if seen == 0 {
		b.Fatal("no handler read a VMI")
	}
}
