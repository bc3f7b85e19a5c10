package controllers

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/yaml"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// readFixture reads a file of the Istio 1.30 (Multus) injector fixture.
func readFixture(t *testing.T, file string, into any) {
	t.Helper()
	raw, err := os.ReadFile("../tests/testdata/istio-injectors/istio-1.30-multus/" + file)
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
	readFixture(t, "configmap.yaml", cm)
	readFixture(t, "mutatingwebhookconfiguration.yaml", mwc)
	c := fake.NewClientBuilder().WithScheme(scheme).WithReturnManagedFields().
		WithObjects(cm, mwc, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}).Build()
	// virtmesh's own NAD in namespace default, which is not in the mesh.
	if err := c.Create(ctx, DesiredNAD("default", "istio-cni"), client.FieldOwner(FieldOwner)); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.NADCleanupDelay = 0
	r := &NADReconciler{Client: c, Pods: c, Mesh: mesh.DefaultConfig(), Config: cfg, Recorder: record.NewFakeRecorder(10)}
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

// An unneeded NAD of virtmesh's is deleted only once it has stayed unneeded
// for --nad-cleanup-delay: a namespace label removed and put back (or an
// injector reinstalled) in between keeps it.
func TestNADCleanupDelay(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vms", Labels: map[string]string{"istio-injection": "enabled"}}}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithReturnManagedFields().WithObjects(ns).Build()
	cfg := DefaultConfig()
	cfg.NADMode = NADPerNamespace
	clock := time.Date(2026, 12, 3, 3, 0, 0, 0, time.UTC)
	r := &NADReconciler{Client: client.WithFieldOwner(c, FieldOwner), Pods: c, Mesh: mesh.DefaultConfig(), Config: cfg, Recorder: record.NewFakeRecorder(100),
		now: func() time.Time { return clock }}
	key := client.ObjectKey{Namespace: "vms", Name: DefaultNADName}
	reconcileAt := func(step string) reconcile.Result {
		t.Helper()
		res, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: "vms"}})
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		return res
	}
	exists := func() bool {
		return c.Get(ctx, key, &nadv1.NetworkAttachmentDefinition{}) == nil
	}
	setLabel := func(v string) {
		t.Helper()
		ns := &corev1.Namespace{}
		if err := c.Get(ctx, client.ObjectKey{Name: "vms"}, ns); err != nil {
			t.Fatal(err)
		}
		ns.Labels["istio-injection"] = v
		if err := c.Update(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}

	reconcileAt("mesh namespace")
	if !exists() {
		t.Fatal("no NAD in a mesh namespace")
	}
	setLabel("disabled")
	if res := reconcileAt("just left the mesh"); !exists() || res.RequeueAfter != time.Minute {
		t.Fatalf("left the mesh: NAD exists %v, requeue %v; want kept, requeued after 1m", exists(), res.RequeueAfter)
	}
	clock = clock.Add(50 * time.Second)
	if res := reconcileAt("50s later"); !exists() || res.RequeueAfter != 10*time.Second {
		t.Fatalf("50s later: NAD exists %v, requeue %v; want kept, requeued after 10s", exists(), res.RequeueAfter)
	}
	setLabel("enabled")
	reconcileAt("back in the mesh")
	setLabel("disabled")
	clock = clock.Add(50 * time.Second)
	if reconcileAt("left again"); !exists() {
		t.Fatal("the delay did not start again after the namespace came back")
	}
	clock = clock.Add(time.Minute)
	if res := reconcileAt("a minute later"); exists() || res.RequeueAfter != 0 {
		t.Fatalf("after the delay: NAD exists %v, requeue %v; want deleted", exists(), res.RequeueAfter)
	}
}

// A Helm reinstall of istiod removes its webhook configuration for a moment:
// the last decision (shared NAD, nothing to create) holds for
// --nad-cleanup-delay, so no NAD is created in every namespace and deleted again.
func TestHoldsTheLastDecisionWhileTheInjectorIsGone(t *testing.T) {
	ctx := context.Background()
	cm, mwc := &corev1.ConfigMap{}, &admissionregistrationv1.MutatingWebhookConfiguration{}
	readFixture(t, "configmap.yaml", cm)
	readFixture(t, "mutatingwebhookconfiguration.yaml", mwc)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vms", Labels: map[string]string{"istio-injection": "enabled"}}}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithReturnManagedFields().WithObjects(cm, mwc, ns).Build()
	clock := time.Date(2026, 12, 3, 3, 0, 0, 0, time.UTC)
	r := &NADReconciler{Client: client.WithFieldOwner(c, FieldOwner), Pods: c, Mesh: mesh.DefaultConfig(), Config: DefaultConfig(),
		Recorder: record.NewFakeRecorder(100), now: func() time.Time { return clock }}
	nads := func() int {
		list := &nadv1.NetworkAttachmentDefinitionList{}
		if err := c.List(ctx, list, client.InNamespace("vms")); err != nil {
			t.Fatal(err)
		}
		return len(list.Items)
	}
	reconcileNow := func() reconcile.Result {
		t.Helper()
		res, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: "vms"}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if reconcileNow(); nads() != 0 {
		t.Fatal("a NAD was created for a shared-NAD injector")
	}
	if err := c.Delete(ctx, mwc); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(20 * time.Second)
	if res := reconcileNow(); nads() != 0 || res.RequeueAfter != 40*time.Second {
		t.Fatalf("injector gone for a moment: %d NADs, requeue %v; want none, and a recheck when 1m has passed", nads(), res.RequeueAfter)
	}
	clock = clock.Add(time.Minute)
	if reconcileNow(); nads() != 1 {
		t.Fatalf("injector gone for longer than the delay: %d NADs, want the per-namespace fallback", nads())
	}
}

// A tenant's own NAD of the istio-cni name is never touched, but one that
// runs another plugin is reported: meshed VMs' traffic would bypass the proxy.
func TestWarnsAboutAForeignNADRunningAnotherPlugin(t *testing.T) {
	ctx := context.Background()
	for config, warned := range map[string]bool{
		`{"cniVersion":"0.3.1","type":"bridge","bridge":"br0"}`:        true,
		`{"cniVersion":"0.3.1","name":"istio-cni","type":"istio-cni"}`: false,
		``: false,
	} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vms", Labels: map[string]string{"istio-injection": "enabled"}}}
		foreign := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Name: DefaultNADName, Namespace: "vms"},
			Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: config}}
		c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(ns, foreign).Build()
		cfg := DefaultConfig()
		cfg.NADMode = NADPerNamespace
		rec := record.NewFakeRecorder(10)
		r := &NADReconciler{Client: client.WithFieldOwner(c, FieldOwner), Pods: c, Mesh: mesh.DefaultConfig(), Config: cfg, Recorder: rec}
		for range 2 { // a resync says nothing again
			if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: "vms"}}); err != nil {
				t.Fatal(err)
			}
		}
		var events []string
		for len(rec.Events) > 0 {
			events = append(events, <-rec.Events)
		}
		if got := len(events) == 1 && strings.Contains(events[0], ReasonNADNotIstioCNI); got != warned {
			t.Errorf("config %q: events %q, want a warning: %v", config, events, warned)
		}
		have := &nadv1.NetworkAttachmentDefinition{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(foreign), have); err != nil || have.Spec.Config != config {
			t.Errorf("config %q: the tenant's NAD was changed: %v %q", config, err, have.Spec.Config)
		}
	}
}

// Only the coming and going of a NAD an injector references as its shared
// NAD sweeps every namespace: a tenant's NADs do not.
func TestOnlySharedNADsSweepEveryNamespace(t *testing.T) {
	cm, mwc := &corev1.ConfigMap{}, &admissionregistrationv1.MutatingWebhookConfiguration{}
	readFixture(t, "configmap.yaml", cm)
	readFixture(t, "mutatingwebhookconfiguration.yaml", mwc)
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(cm, mwc).Build()
	r := &NADReconciler{Client: c, Pods: c, Mesh: mesh.DefaultConfig(), Config: DefaultConfig(), Recorder: record.NewFakeRecorder(10)}
	p := r.sharedNADCameOrWent()
	foreign := func(ns, name string) *nadv1.NetworkAttachmentDefinition {
		return &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	for _, tc := range []struct {
		nad  *nadv1.NetworkAttachmentDefinition
		want bool
	}{
		{foreign("default", "istio-cni"), true}, // the fixture's injector references default/istio-cni
		{foreign("tenant", "istio-cni"), false},
		{foreign("default", "other"), false},
	} {
		if got := p.Create(event.CreateEvent{Object: tc.nad}); got != tc.want {
			t.Errorf("create of %s/%s sweeps: %v, want %v", tc.nad.Namespace, tc.nad.Name, got, tc.want)
		}
		if got := p.Delete(event.DeleteEvent{Object: tc.nad}); got != tc.want {
			t.Errorf("delete of %s/%s sweeps: %v, want %v", tc.nad.Namespace, tc.nad.Name, got, tc.want)
		}
		if p.Update(event.UpdateEvent{ObjectOld: tc.nad, ObjectNew: tc.nad}) {
			t.Errorf("an edit of %s/%s sweeps", tc.nad.Namespace, tc.nad.Name)
		}
	}
}

// A NAD of virtmesh's that no VM needs is kept while another pod of the
// namespace references it (Istio injects those too), found by listing the
// namespace's pods just before the delete: at most every
// inUseByOthersRecheck, however often the namespace is reconciled.
func TestKeepsANADAnotherPodReferences(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vms", Labels: map[string]string{"istio-injection": "enabled"}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "vms", Annotations: map[string]string{mesh.NetworksAnnotation: "istio-cni"}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithReturnManagedFields().WithObjects(ns, pod).WithStatusSubresource(pod).Build()
	podLists := 0
	live := interceptor.NewClient(c, interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		if _, ok := list.(*corev1.PodList); ok {
			podLists++
		}
		return c.List(ctx, list, opts...)
	}})
	cfg := DefaultConfig()
	cfg.NADMode, cfg.NADCleanupDelay = NADPerNamespace, 0
	clock := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	rec := record.NewFakeRecorder(100)
	empty := fake.NewClientBuilder().WithScheme(testScheme(t)).Build() // no launcher pods
	r := &NADReconciler{Client: client.WithFieldOwner(c, FieldOwner), APIReader: live, Pods: empty, Mesh: mesh.DefaultConfig(), Config: cfg,
		Recorder: rec, now: func() time.Time { return clock }}
	key := client.ObjectKey{Namespace: "vms", Name: DefaultNADName}
	exists := func() bool { return c.Get(ctx, key, &nadv1.NetworkAttachmentDefinition{}) == nil }
	reconcileNow := func(step string) reconcile.Result {
		t.Helper()
		res, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: "vms"}})
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		return res
	}
	reconcileNow("mesh namespace")
	drain(rec)
	ns.Labels = map[string]string{}
	if err := c.Update(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if res := reconcileNow("left the mesh"); !exists() || res.RequeueAfter != r.inUseByOthersRecheck() || podLists != 1 {
		t.Fatalf("left the mesh: NAD exists %v, requeue %v, pod lists %d; want kept, 5s, 1", exists(), res.RequeueAfter, podLists)
	}
	if got := drain(rec); len(got) != 1 || !strings.Contains(got[0], ReasonNADKept) || !strings.Contains(got[0], "pod web references it") {
		t.Fatalf("events: %q", got)
	}
	for range 10 {
		clock = clock.Add(r.inUseByOthersRecheck() / 11)
		reconcileNow("a VMI's status write")
	}
	if !exists() || podLists != 1 {
		t.Fatalf("10 reconciles within the recheck: NAD exists %v, pod lists %d; want kept, still 1", exists(), podLists)
	}
	clock = clock.Add(r.inUseByOthersRecheck())
	reconcileNow("recheck, pod still there")
	if !exists() || podLists != 2 || len(drain(rec)) != 0 {
		t.Fatalf("recheck: NAD exists %v, pod lists %d; want kept, 2, no second Event", exists(), podLists)
	}
	pod.Status.Phase = corev1.PodSucceeded
	if err := c.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(r.inUseByOthersRecheck())
	if reconcileNow("pod finished"); exists() {
		t.Fatal("the NAD outlived the last pod referencing it")
	}
}

func drain(rec *record.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}
