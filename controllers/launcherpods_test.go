package controllers

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// Packing loses nothing trimPod keeps: every shape of launcher pod unpacks
// to exactly the pod trimPod makes.
func TestPackedPodUnpacksToTheTrimmedPod(t *testing.T) {
	deleted := metav1.Now()
	shapes := map[string]func(*corev1.Pod){
		"ready":           func(*corev1.Pod) {},
		"proxy not ready": func(p *corev1.Pod) { p.Status.ContainerStatuses[1].Ready = false },
		"no proxy": func(p *corev1.Pod) {
			p.Spec.Containers, p.Status.ContainerStatuses = p.Spec.Containers[:1], p.Status.ContainerStatuses[:1]
		},
		"no statuses yet":   func(p *corev1.Pod) { p.Status = corev1.PodStatus{Phase: corev1.PodPending} },
		"no networks":       func(p *corev1.Pod) { delete(p.Annotations, mesh.NetworksAnnotation) },
		"no inject":         func(p *corev1.Pod) { delete(p.Annotations, mesh.InjectKey) },
		"inject false":      func(p *corev1.Pod) { p.Annotations[mesh.InjectKey] = "false" },
		"deleting":          func(p *corev1.Pod) { p.DeletionTimestamp = &deleted },
		"no owner deletion": func(p *corev1.Pod) { p.OwnerReferences[0].BlockOwnerDeletion = nil },
		"owner deletion off": func(p *corev1.Pod) {
			p.OwnerReferences[0].BlockOwnerDeletion = ptr.To(false)
		},
		"no VMI controls it": func(p *corev1.Pod) { p.OwnerReferences = nil },
		"created-by differs": func(p *corev1.Pod) { p.Labels[CreatedByLabel] = "someone-else" },
		"init proxy without restart policy": func(p *corev1.Pod) {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: mesh.ProxyContainer})
		},
		"init proxy, restart policy OnFailure": func(p *corev1.Pod) {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: mesh.ProxyContainer,
				RestartPolicy: ptr.To(corev1.ContainerRestartPolicy("OnFailure"))})
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: mesh.ProxyContainer}}
		},
	}
	// These edit the sidecar shape (the native one has an istio-proxy init
	// container already, and container names are unique in a pod).
	sidecarOnly := map[string]bool{"proxy not ready": true, "no proxy": true, "init proxy without restart policy": true,
		"init proxy, restart policy OnFailure": true}
	for name, edit := range shapes {
		for _, native := range []bool{false, true} {
			if native && sidecarOnly[name] {
				continue
			}
			full := injectedLauncherPod(1, native)
			edit(full)
			trimmed, err := trimPod(full.DeepCopy())
			if err != nil {
				t.Fatal(err)
			}
			packed, err := packPod(full.DeepCopy())
			if err != nil {
				t.Fatal(err)
			}
			if got := unpackPod(packed.(*launcherPod)); !equality.Semantic.DeepEqual(got, trimmed) {
				t.Errorf("%s (native %v):\nunpacked %+v\ntrimmed  %+v", name, native, got, trimmed)
			}
		}
	}
	// What the informer hands the transform besides pods passes through.
	tomb := toolscache.DeletedFinalStateUnknown{Key: "vms/x"}
	if got, _ := packPod(tomb); got != tomb {
		t.Errorf("a tombstone became %v", got)
	}
}

// The cache reads as a client.Reader: by namespace and label, one by name,
// and a clear error for anything else.
func TestLauncherPodsReads(t *testing.T) {
	inf := toolscache.NewSharedIndexInformerWithOptions(&toolscache.ListWatch{}, &corev1.Pod{}, toolscache.SharedIndexInformerOptions{
		Indexers: toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc}})
	l := &LauncherPods{informer: inf}
	for i := range 3 {
		p := injectedLauncherPod(i, false)
		if i == 2 {
			p.Namespace = "other"
		}
		packed, _ := packPod(p)
		if err := inf.GetIndexer().Add(packed); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // never synced (never run): reads give up with ctx
	if err := l.List(ctx, &corev1.PodList{}); err == nil {
		t.Fatal("a read before the first list did not wait")
	}
	l.informer = syncedInformer{inf}
	ctx = context.Background()
	pods := &corev1.PodList{}
	if err := l.List(ctx, pods, client.InNamespace("vms"), client.MatchingLabels{CreatedByLabel: "vmi-00001"}); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 || pods.Items[0].Name != "virt-launcher-vm-00001-abcde" || len(pods.Items[0].Spec.Containers) != 1 {
		t.Errorf("listed %+v", pods.Items)
	}
	if err := l.List(ctx, pods, client.InNamespace("vms")); err != nil || len(pods.Items) != 2 {
		t.Errorf("namespace vms: %d pods, %v", len(pods.Items), err)
	}
	if err := l.List(ctx, pods); err != nil || len(pods.Items) != 3 {
		t.Errorf("all: %d pods, %v", len(pods.Items), err)
	}
	if err := l.List(ctx, pods, client.MatchingFields{"spec.nodeName": "node01"}); err == nil {
		t.Error("a field selector was accepted")
	}
	if err := l.List(ctx, &corev1.ServiceList{}); err == nil {
		t.Error("listing Services from the pod cache worked")
	}
	pod := &corev1.Pod{}
	if err := l.Get(ctx, client.ObjectKey{Namespace: "other", Name: "virt-launcher-vm-00002-abcde"}, pod); err != nil || pod.Status.Phase != corev1.PodRunning {
		t.Errorf("get: %v %+v", err, pod)
	}
	if err := l.Get(ctx, client.ObjectKey{Namespace: "vms", Name: "gone"}, pod); !apierrors.IsNotFound(err) {
		t.Errorf("get of a missing pod: %v", err)
	}
}

// The sources hand controllers corev1.Pods, tombstones included.
func TestUnpackedEvents(t *testing.T) {
	packed, _ := packPod(injectedLauncherPod(1, false))
	var got []any
	h := unpackEvents(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { got = append(got, o) },
		UpdateFunc: func(_, o any) { got = append(got, o) },
		DeleteFunc: func(o any) { got = append(got, o) },
	})
	h.OnAdd(packed, true)
	h.OnUpdate(packed, packed)
	h.OnDelete(toolscache.DeletedFinalStateUnknown{Key: "vms/x", Obj: packed})
	for i, o := range got[:2] {
		if p, ok := o.(*corev1.Pod); !ok || p.Name != "virt-launcher-vm-00001-abcde" {
			t.Errorf("event %d: %T", i, o)
		}
	}
	if tomb, ok := got[2].(toolscache.DeletedFinalStateUnknown); !ok || tomb.Obj.(*corev1.Pod).Name != "virt-launcher-vm-00001-abcde" {
		t.Errorf("delete: %#v", got[2])
	}
}

type syncedInformer struct{ toolscache.SharedIndexInformer }

func (syncedInformer) HasSynced() bool { return true }
