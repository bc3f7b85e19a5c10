package controllers

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
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
		`{"cniVersion":"0.3.1","type":"istio-cni","kubernetes":{"exclude_namespaces":["istio-system","vms"]}}`: true,
		`{"cniVersion":"0.3.1","type":"istio-cni","kubernetes":{"exclude_namespaces":["istio-system"]}}`:       false,
		`{"cniVersion":"0.3.1","plugins":[{"type":"istio-cni","kubernetes":{"exclude_namespaces":["vms"]}}]}`:  true,
	} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vms", Labels: map[string]string{"istio-injection": "enabled"}}}
		foreign := &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Name: DefaultNADName, Namespace: "vms"},
			Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: config}}
		c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(ns, foreign).WithReturnManagedFields().Build()
		cfg := DefaultConfig()
		cfg.NADMode = NADPerNamespace
		rec := &refRecorder{}
		r := &NADReconciler{Client: client.WithFieldOwner(c, FieldOwner), Pods: c, Mesh: mesh.DefaultConfig(), Config: cfg, Recorder: rec}
		reconcileNS := func() {
			t.Helper()
			if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: "vms"}}); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 { // a resync says nothing again
			reconcileNS()
		}
		if got := len(rec.events) == 1 && rec.events[0].reason == ReasonNADNotIstioCNI; got != warned {
			t.Errorf("config %q: events %v, want a warning: %v", config, rec.events, warned)
		}
		if warned {
			// On the NAD, in its namespace, where kubectl describe and
			// kubectl get events -n vms show it.
			if e := rec.events[0]; e.typ != corev1.EventTypeWarning || e.ref.Kind != "NetworkAttachmentDefinition" ||
				e.ref.Namespace != "vms" || e.ref.Name != DefaultNADName {
				t.Errorf("config %q: the Warning is %s on %s %s/%s, want a Warning on the NAD", config, e.typ, e.ref.Kind, e.ref.Namespace, e.ref.Name)
			}
		}
		// The tenant can delete the Event; the metric stays.
		if got, want := r.reports.countForeign(), map[bool]float64{true: 1}[warned]; got != want {
			t.Errorf("config %q: virtmesh_namespaces_foreign_nad = %v, want %v", config, got, want)
		}
		have := &nadv1.NetworkAttachmentDefinition{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(foreign), have); err != nil || have.Spec.Config != config {
			t.Errorf("config %q: the tenant's NAD was changed: %v %q", config, err, have.Spec.Config)
		}
		if !warned {
			continue
		}
		step := "the namespace leaves the mesh"
		ns.Labels = nil
		if err := c.Update(ctx, ns); err != nil {
			t.Fatal(err)
		}
		reconcileNS()
		if got := r.reports.countForeign(); got != 0 {
			t.Errorf("%s: virtmesh_namespaces_foreign_nad = %v, want 0 (its VMs no longer get the NAD)", step, got)
		}
		step = "the namespace joins again, and the tenant deletes the NAD"
		ns.Labels = map[string]string{"istio-injection": "enabled"}
		if err := c.Update(ctx, ns); err != nil {
			t.Fatal(err)
		}
		reconcileNS()
		if got := r.reports.countForeign(); got != 1 {
			t.Errorf("%s: virtmesh_namespaces_foreign_nad = %v before the delete, want 1", step, got)
		}
		if len(rec.events) != 2 || rec.events[1].reason != ReasonNADNotIstioCNI {
			t.Errorf("%s: events %v, want the Warning again on rejoining", step, rec.events)
		}
		step = "the tenant deletes the NAD and creates it again between two looks"
		if err := c.Delete(ctx, foreign); err != nil {
			t.Fatal(err)
		}
		foreign.ResourceVersion, foreign.UID = "", "second"
		if err := c.Create(ctx, foreign); err != nil {
			t.Fatal(err)
		}
		before := testutil.ToFloat64(foreignNADsFound)
		reconcileNS()
		if len(rec.events) != 3 || rec.events[2].reason != ReasonNADNotIstioCNI || testutil.ToFloat64(foreignNADsFound) != before+1 {
			t.Errorf("%s: events %v, virtmesh_foreign_nads_found_total +%v; want the Warning again, +1", step, rec.events,
				testutil.ToFloat64(foreignNADsFound)-before)
		}
		step = "the namespace joins again, and the tenant deletes the NAD"
		if err := c.Delete(ctx, foreign); err != nil {
			t.Fatal(err)
		}
		reconcileNS()
		if got := r.reports.countForeign(); got != 0 {
			t.Errorf("%s: virtmesh_namespaces_foreign_nad = %v, want 0 (virtmesh's istio-cni NAD is there now)", step, got)
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(foreign), have); err != nil || !Virtmeshs(have) {
			t.Errorf("%s: virtmesh did not create its NAD: %v %v", step, err, have.Labels)
		}
		step = "the tenant swaps virtmesh's NAD for another bridge one"
		if err := c.Delete(ctx, have); err != nil {
			t.Fatal(err)
		}
		again := foreign.DeepCopy()
		again.ResourceVersion = ""
		if err := c.Create(ctx, again); err != nil {
			t.Fatal(err)
		}
		rec.events = nil
		reconcileNS()
		if len(rec.events) != 1 || rec.events[0].reason != ReasonNADNotIstioCNI || r.reports.countForeign() != 1 {
			t.Errorf("%s: events %v, virtmesh_namespaces_foreign_nad = %v; want the Warning again, and 1", step, rec.events, r.reports.countForeign())
		}
		step = "the namespace is deleted"
		r.reports.setForeign("vms", DefaultNADName, true)
		if err := c.Delete(ctx, ns); err != nil {
			t.Fatal(err)
		}
		reconcileNS()
		if got := r.reports.countForeign(); got != 0 {
			t.Errorf("%s: virtmesh_namespaces_foreign_nad = %v, want 0", step, got)
		}
	}
}

// The Events about virtmesh's own NAD are on the NAD, in its namespace.
func TestNADEventsAreOnTheNAD(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vms", Labels: map[string]string{"istio-injection": "enabled"}}}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(ns).WithReturnManagedFields().Build()
	cfg := DefaultConfig()
	cfg.NADMode = NADPerNamespace
	rec := &refRecorder{}
	r := &NADReconciler{Client: client.WithFieldOwner(c, FieldOwner), Pods: c, Mesh: mesh.DefaultConfig(), Config: cfg, Recorder: rec}
	reconcileNS := func() {
		t.Helper()
		if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: "vms"}}); err != nil {
			t.Fatal(err)
		}
	}
	reconcileNS()
	nad := &nadv1.NetworkAttachmentDefinition{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "vms", Name: DefaultNADName}, nad); err != nil {
		t.Fatal(err)
	}
	nad.Spec.Config = `{"cniVersion":"0.3.1","type":"bridge"}` // someone edits virtmesh's NAD
	if err := c.Update(ctx, nad); err != nil {
		t.Fatal(err)
	}
	reconcileNS()
	var reasons []string
	for _, e := range rec.events {
		reasons = append(reasons, e.reason)
		if e.typ != corev1.EventTypeNormal || e.ref.Kind != "NetworkAttachmentDefinition" || e.ref.Namespace != "vms" || e.ref.Name != DefaultNADName {
			t.Errorf("%s is %s on %s %s/%s, want Normal on the NAD vms/%s", e.reason, e.typ, e.ref.Kind, e.ref.Namespace, e.ref.Name, DefaultNADName)
		}
	}
	if !slices.Equal(reasons, []string{ReasonNADCreated, ReasonNADRestored}) {
		t.Errorf("Events %q, want %q", reasons, []string{ReasonNADCreated, ReasonNADRestored})
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(nad), nad); err != nil || nad.Spec.Config != "" {
		t.Errorf("virtmesh's NAD was not restored: %v %q", err, nad.Spec.Config)
	}
}

// refRecorder records Events with the object they are about.
type refRecorder struct {
	events []refEvent
}

type refEvent struct {
	ref              corev1.ObjectReference
	typ, reason, msg string
}

func (r *refRecorder) Event(o runtime.Object, typ, reason, msg string) {
	ref, ok := o.(*corev1.ObjectReference)
	if !ok {
		if m, err := meta.Accessor(o); err == nil {
			ref = &corev1.ObjectReference{Kind: o.GetObjectKind().GroupVersionKind().Kind, Namespace: m.GetNamespace(), Name: m.GetName()}
		} else {
			ref = &corev1.ObjectReference{}
		}
	}
	r.events = append(r.events, refEvent{ref: *ref, typ: typ, reason: reason, msg: msg})
}

func (r *refRecorder) Eventf(o runtime.Object, typ, reason, format string, args ...any) {
	r.Event(o, typ, reason, fmt.Sprintf(format, args...))
}

func (r *refRecorder) AnnotatedEventf(o runtime.Object, _ map[string]string, typ, reason, format string, args ...any) {
	r.Eventf(o, typ, reason, format, args...)
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
// namespace's pods' metadata just before the delete: at most every
// inUseByOthersRecheck, however often the namespace is reconciled; from the
// watch cache while it finds a pod, consistently before a delete; one Event
// per pod that keeps it, whatever other pods come and go.
func TestKeepsANADAnotherPodReferences(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vms", Labels: map[string]string{"istio-injection": "enabled"}}}
	referencing := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "vms", Annotations: map[string]string{mesh.NetworksAnnotation: "istio-cni"}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	}
	web, other := referencing("web"), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: "vms"}}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithReturnManagedFields().WithObjects(ns, web, other).WithStatusSubresource(web).Build()
	var podLists []string // the resourceVersion each list asked for
	// The API server's side of the list: metadata only, finished pods left
	// out by the field selector (the fake client has no != selectors).
	live := interceptor.NewClient(c, interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		meta, ok := list.(*metav1.PartialObjectMetadataList)
		if !ok || meta.GroupVersionKind().Kind != "PodList" {
			if _, full := list.(*corev1.PodList); full {
				t.Fatal("listed whole pods: metadata is enough")
			}
			return c.List(ctx, list, opts...)
		}
		o := (&client.ListOptions{}).ApplyOptions(opts)
		if got := o.FieldSelector.String(); got != "status.phase!=Succeeded,status.phase!=Failed" {
			t.Fatalf("field selector %q", got)
		}
		podLists = append(podLists, o.Raw.ResourceVersion)
		pods := &corev1.PodList{}
		if err := c.List(ctx, pods, client.InNamespace(o.Namespace)); err != nil {
			return err
		}
		for i := range pods.Items {
			if p := pods.Items[i].Status.Phase; p != corev1.PodSucceeded && p != corev1.PodFailed {
				meta.Items = append(meta.Items, metav1.PartialObjectMetadata{ObjectMeta: pods.Items[i].ObjectMeta})
			}
		}
		return nil
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
	finish := func(p *corev1.Pod) {
		t.Helper()
		p.Status.Phase = corev1.PodSucceeded
		if err := c.Status().Update(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	reconcileNow("mesh namespace")
	drain(rec)
	ns.Labels = map[string]string{}
	if err := c.Update(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if res := reconcileNow("left the mesh"); !exists() || res.RequeueAfter != r.inUseByOthersRecheck() || !slices.Equal(podLists, []string{"0"}) {
		t.Fatalf("left the mesh: NAD exists %v, requeue %v, pod lists %q; want kept, 5s, one from the cache", exists(), res.RequeueAfter, podLists)
	}
	if got := drain(rec); len(got) != 1 || !strings.Contains(got[0], ReasonNADKept) || !strings.Contains(got[0], "pod web references it") {
		t.Fatalf("events: %q", got)
	}
	for range 10 {
		clock = clock.Add(r.inUseByOthersRecheck() / 11)
		reconcileNow("a VMI's status write")
	}
	if !exists() || len(podLists) != 1 {
		t.Fatalf("10 reconciles within the recheck: NAD exists %v, pod lists %q; want kept, still 1", exists(), podLists)
	}

	// A pod that sorts first references it too: "web" still keeps it, and
	// no Event is sent again.
	job := referencing("a-job")
	if err := c.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	if err := c.Status().Update(ctx, job); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	clock = clock.Add(r.inUseByOthersRecheck())
	reconcileNow("recheck, pods still there")
	if !exists() || len(podLists) != 2 || len(drain(rec)) != 0 {
		t.Fatalf("recheck: NAD exists %v, pod lists %q; want kept, 2, no second Event", exists(), podLists)
	}
	finish(web)
	clock = clock.Add(r.inUseByOthersRecheck())
	reconcileNow("web finished")
	if got := drain(rec); !exists() || len(got) != 1 || !strings.Contains(got[0], "pod a-job references it") {
		t.Fatalf("web finished: NAD exists %v, events %q; want kept for a-job", exists(), got)
	}
	finish(job)
	clock = clock.Add(r.inUseByOthersRecheck())
	podLists = nil
	if reconcileNow("a-job finished"); exists() {
		t.Fatal("the NAD outlived the last pod referencing it")
	}
	if !slices.Equal(podLists, []string{"0", ""}) {
		t.Fatalf("pod lists before the delete %q: want the cache's, then a consistent one", podLists)
	}
	if _, kept := r.keptFor.Load(key); kept {
		t.Error("keptFor still holds the deleted NAD")
	}
}

// A NAD of virtmesh's that someone else deletes while it waits out
// --nad-cleanup-delay is forgotten.
func TestForgetsANADDeletedByOthers(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vms", Labels: map[string]string{"istio-injection": "enabled"}}}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithReturnManagedFields().WithObjects(ns).Build()
	cfg := DefaultConfig()
	cfg.NADMode, cfg.NADCleanupDelay = NADPerNamespace, time.Minute
	empty := fake.NewClientBuilder().WithScheme(testScheme(t)).Build()
	r := &NADReconciler{Client: client.WithFieldOwner(c, FieldOwner), APIReader: c, Pods: empty, Mesh: mesh.DefaultConfig(), Config: cfg,
		Recorder: record.NewFakeRecorder(100)}
	req := reconcile.Request{NamespacedName: client.ObjectKey{Name: "vms"}}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	ns.Labels = map[string]string{}
	if err := c.Update(ctx, ns); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKey{Namespace: "vms", Name: DefaultNADName}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, waits := r.unneededSince.Load(key); !waits {
		t.Fatal("the unneeded NAD does not wait out the delay")
	}
	if err := c.Delete(ctx, &nadv1.NetworkAttachmentDefinition{ObjectMeta: metav1.ObjectMeta{Namespace: "vms", Name: DefaultNADName}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, waits := r.unneededSince.Load(key); waits {
		t.Error("unneededSince still holds a NAD someone else deleted")
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

// When the watch cache's answer finds no pod referencing the NAD (it may
// lag), the consistent list that decides the delete reads every page.
func TestAnyPodReferencingReadsEveryPageBeforeADelete(t *testing.T) {
	ctx := context.Background()
	var pods []client.Object
	for i, networks := range []string{"", "other-nad", "", "istio-cni"} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i), Namespace: "vms"}}
		if networks != "" {
			p.Annotations = map[string]string{mesh.NetworksAnnotation: networks}
		}
		pods = append(pods, p)
	}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(pods...).Build()
	var calls []string
	var cacheErr error
	reader := interceptor.NewClient(c, interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		meta := list.(*metav1.PartialObjectMetadataList)
		o := (&client.ListOptions{}).ApplyOptions(opts)
		calls = append(calls, fmt.Sprintf("rv=%q continue=%q", o.Raw.ResourceVersion, o.Continue))
		if o.Raw.ResourceVersion == "0" {
			return cacheErr // a watch cache that has not seen the pods yet, or is not ready
		}
		if o.Limit == 0 {
			t.Fatal("a consistent list without a page size")
		}
		all := &corev1.PodList{}
		if err := c.List(ctx, all, client.InNamespace(o.Namespace)); err != nil {
			return err
		}
		from, _ := strconv.Atoi(cmp.Or(o.Continue, "0")) // pages of one pod
		meta.Items = []metav1.PartialObjectMetadata{{ObjectMeta: all.Items[from].ObjectMeta}}
		if from+1 < len(all.Items) {
			meta.Continue = strconv.Itoa(from + 1)
		}
		return nil
	}})
	r := &NADReconciler{APIReader: reader}
	for _, cacheErr = range []error{nil, apierrors.NewTooManyRequests("the watch cache is not ready", 1)} {
		calls = nil
		got, err := r.anyPodReferencing(ctx, client.ObjectKey{Namespace: "vms", Name: "istio-cni"}, "")
		if err != nil {
			t.Fatal(err)
		}
		want := []string{`rv="0" continue=""`, `rv="" continue=""`, `rv="" continue="1"`, `rv="" continue="2"`, `rv="" continue="3"`}
		if got != "pod-3" || !slices.Equal(calls, want) {
			t.Fatalf("cache answered %v: found %q with lists %q; want pod-3 with %q", cacheErr, got, calls, want)
		}
	}
}
