package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientgoapplyconfigurations "k8s.io/client-go/applyconfigurations"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/record"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

// ssaClient is a fake API server that tracks managed fields as a real one.
func ssaClient() client.Client {
	return fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithReturnManagedFields().
		WithTypeConverters(clientgoapplyconfigurations.NewTypeConverter(clientgoscheme.Scheme)).Build()
}

// createdByVirtmesh is want as virtmesh creates it (a Create, before the
// move to server-side apply), read back with its managed fields.
func createdByVirtmesh(t *testing.T, c client.Client, want *corev1.Service) *corev1.Service {
	t.Helper()
	ctx := context.Background()
	if err := c.Create(ctx, want.DeepCopy(), client.FieldOwner(FieldOwner)); err != nil {
		t.Fatal(err)
	}
	got := &corev1.Service{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(want), got); err != nil {
		t.Fatal(err)
	}
	return got
}

func testReconciler(c, live client.Client) *ServiceReconciler {
	return &ServiceReconciler{Client: client.WithFieldOwner(c, FieldOwner), APIReader: live,
		notifier: notifier{recorder: record.NewFakeRecorder(100)}}
}

// A Service someone else creates between virtmesh's check and its write is
// never merged into: the write is a create, which fails.
func TestEnsureNeverMergesIntoAServiceCreatedMeanwhile(t *testing.T) {
	ctx := context.Background()
	theirs := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "vms"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"team": "x"}, Ports: []corev1.ServicePort{{Name: "tcp-5432", Port: 5432, Protocol: corev1.ProtocolTCP}}}}
	c := ssaClient()
	if err := c.Create(ctx, theirs, client.FieldOwner("tenant")); err != nil {
		t.Fatal(err)
	}
	members := []Member{vm("a", port("http", 8080, ""))}
	want, _ := DesiredService("vms", "web", members)
	r := testReconciler(c, ssaClient()) // the check reads an API server that does not have it yet
	res, err := r.ensure(ctx, nil, want, members)
	if err != nil || res != requeueSoon {
		t.Fatalf("got %+v, %v; want a quick requeue", res, err)
	}
	got := &corev1.Service{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(want), got); err != nil {
		t.Fatal(err)
	}
	if Managed(got) || got.Spec.Selector["team"] != "x" || len(got.Spec.Ports) != 1 || len(got.OwnerReferences) != 0 {
		t.Fatalf("someone else's Service was changed: %+v", got)
	}
}

// A Service virtmesh created stays under the create's Update entry while it
// is as wanted; the first change moves its fields to server-side apply
// first, reading the live Service, so the other managers' managedFields
// entries survive it.
func TestMigrateKeepsOtherManagers(t *testing.T) {
	ctx := context.Background()
	members := []Member{vm("a", port("http", 8080, ""))}
	created, _ := DesiredService("vms", "web", []Member{vm("a", port("http", 8080, ""), port("tcp", 9999, ""))})
	want, _ := DesiredService("vms", "web", members)
	c := ssaClient()
	live := createdByVirtmesh(t, c, created)
	live.Annotations = map[string]string{"example.com/note": "x"}
	if err := c.Update(ctx, live, client.FieldOwner("kubectl-annotate")); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(want), live); err != nil {
		t.Fatal(err)
	}
	cachedAny, _ := keepOwnManagedFields(live.DeepCopy()) // as the cache holds it
	cached := cachedAny.(*corev1.Service)
	if !hasUpdateEntry(cached) {
		t.Fatal("the cached copy does not show virtmesh's Update entry")
	}
	r := testReconciler(c, c)
	rv := cached.ResourceVersion
	if res, err := r.ensure(ctx, cached, created, members); err != nil || res != (reconcile.Result{}) {
		t.Fatalf("as created: %+v, %v", res, err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(want), live); err != nil || live.ResourceVersion != rv {
		t.Fatalf("a Service as wanted was written: %v", err)
	}
	if res, err := r.ensure(ctx, cached, want, members); err != nil || res != requeueSoon {
		t.Fatalf("got %+v, %v", res, err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(want), live); err != nil {
		t.Fatal(err)
	}
	managers := map[string]metav1.ManagedFieldsOperationType{}
	for _, e := range live.ManagedFields {
		managers[e.Manager] = e.Operation
	}
	if managers["kubectl-annotate"] != metav1.ManagedFieldsOperationUpdate || managers[FieldOwner] != metav1.ManagedFieldsOperationApply || len(managers) != 2 {
		t.Fatalf("managedFields after migration: %v", managers)
	}
	if hasUpdateEntry(live) || !serviceApplied(live, serviceApplyConfiguration(created)) {
		t.Fatalf("not migrated: %+v", live.ManagedFields)
	}
	// Then the apply removes the port virtmesh no longer applies.
	if res, err := r.ensure(ctx, live, want, members); err != nil || res != (reconcile.Result{}) {
		t.Fatalf("apply: %+v, %v", res, err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(want), live); err != nil || len(live.Spec.Ports) != 1 {
		t.Fatalf("after the apply: %v, ports %+v", err, live.Spec.Ports)
	}
}

// A new Service costs a create, and no read; reconciling it again as it is
// costs nothing; a name someone else holds is then rechecked by reads, never
// by more failed creates.
func TestCreateWritesOnceAndRechecksATakenNameByReading(t *testing.T) {
	ctx := context.Background()
	calls := map[string]int{}
	count := func(verb string) { calls[verb]++ }
	base := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithReturnManagedFields().
		WithTypeConverters(clientgoapplyconfigurations.NewTypeConverter(clientgoscheme.Scheme)).
		WithInterceptorFuncs(interceptor.Funcs{
			Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				count("create")
				return c.Create(ctx, obj, opts...)
			},
			Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
				count("patch")
				return c.Patch(ctx, obj, patch, opts...)
			},
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				count("get")
				return c.Get(ctx, key, obj, opts...)
			},
		}).Build()
	members := []Member{vm("a", port("http", 8080, ""))}
	want, _ := DesiredService("vms", "web", members)
	r := testReconciler(base, base)
	if res, err := r.ensure(ctx, nil, want, members); err != nil || res.RequeueAfter != createdRecheck {
		t.Fatalf("create: %+v, %v", res, err)
	}
	if calls["create"] != 1 || calls["patch"] != 0 || calls["get"] != 0 {
		t.Fatalf("a new Service took %v; want one create", calls)
	}
	live := &corev1.Service{}
	if err := base.Get(ctx, client.ObjectKeyFromObject(want), live); err != nil {
		t.Fatal(err)
	}
	cached, _ := keepOwnManagedFields(live.DeepCopy())
	clear(calls)
	if res, err := r.ensure(ctx, cached.(*corev1.Service), want, members); err != nil || res != (reconcile.Result{}) || len(calls) != 0 {
		t.Fatalf("reconciling the new Service again: %+v, %v, %v", res, err, calls)
	}

	theirs := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "vms"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "tcp-5432", Port: 5432, Protocol: corev1.ProtocolTCP}}}}
	if err := base.Create(ctx, theirs, client.FieldOwner("tenant")); err != nil {
		t.Fatal(err)
	}
	dbWant, _ := DesiredService("vms", "db", members)
	clear(calls)
	for range 3 {
		if res, err := r.ensure(ctx, nil, dbWant, members); err != nil || res.RequeueAfter != conflictRecheck {
			t.Fatalf("taken name: %+v, %v", res, err)
		}
	}
	if calls["create"] != 1 || calls["patch"] != 0 || calls["get"] != 3 {
		t.Fatalf("three reconciles of a taken name took %v; want one failed create, then reads", calls)
	}
	if err := base.Delete(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	clear(calls)
	if res, err := r.ensure(ctx, nil, dbWant, members); err != nil || res.RequeueAfter != createdRecheck {
		t.Fatalf("freed name: %+v, %v", res, err)
	}
	if calls["create"] != 1 || calls["get"] != 1 {
		t.Fatalf("a freed name took %v; want a read, then the create", calls)
	}
}

// A change of a Service with many members sends at most maxMemberEvents
// Events, to the first members by name, each saying how many it serves.
func TestServiceEventsAreBounded(t *testing.T) {
	rec := record.NewFakeRecorder(100)
	n := &notifier{recorder: rec}
	var members []Member
	for i := 40; i > 0; i-- {
		members = append(members, Member{Kind: "VirtualMachine", Namespace: "vms", Name: fmt.Sprintf("vm-%02d", i), UID: types.UID(fmt.Sprint(i))})
	}
	n.eventAll(members, ReasonServiceUpdated, "virtmesh updated Service %q", "web")
	close(rec.Events)
	var got []string
	for e := range rec.Events {
		got = append(got, e)
	}
	if len(got) != maxMemberEvents {
		t.Fatalf("%d Events, want %d", len(got), maxMemberEvents)
	}
	for _, e := range got {
		if !strings.Contains(e, `virtmesh updated Service "web" (this Event goes to 10 of the 40 VMs and VMIs it serves)`) {
			t.Errorf("event %q", e)
		}
	}
	// A few members: each gets the Event, as it was.
	rec = record.NewFakeRecorder(100)
	n = &notifier{recorder: rec}
	n.eventAll(members[:3], ReasonServiceCreated, "virtmesh created Service %q", "web")
	if len(rec.Events) != 3 || !strings.HasSuffix(<-rec.Events, `virtmesh created Service "web"`) {
		t.Errorf("%d Events", len(rec.Events))
	}
}

// A reconcile of an app whose Service virtmesh just created, before the
// cache shows it (a second VM of the app, say), waits for the cache rather
// than create it again; once the wait is over, a Service still missing is
// created again.
func TestACreatedServiceIsNotCreatedAgainWhileTheCacheLags(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vms", Labels: map[string]string{"istio-injection": "enabled"}}}
	v1, v2 := testkit.MeshVM("web-v1", "web", "v1", 8080), testkit.MeshVM("web-v2", "web", "v2", 8080)
	v1.Namespace, v2.Namespace = "vms", "vms"
	index := func(o client.Object) []string {
		if req, ok := appOf(o); ok {
			return []string{req.Name}
		}
		return nil
	}
	creates, lag := 0, true
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithReturnManagedFields().WithObjects(ns, v1, v2).
		WithIndex(&kubevirtv1.VirtualMachine{}, appIndex, index).WithIndex(&kubevirtv1.VirtualMachineInstance{}, appIndex, index).
		WithInterceptorFuncs(interceptor.Funcs{
			Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				if _, ok := obj.(*corev1.Service); ok {
					creates++
				}
				return c.Create(ctx, obj, opts...)
			},
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				if _, ok := obj.(*corev1.Service); ok && lag {
					return apierrors.NewNotFound(corev1.Resource("services"), key.Name)
				}
				return c.Get(ctx, key, obj, opts...)
			},
		}).Build()
	r := testReconciler(c, c)
	r.Mesh = mesh.DefaultConfig()
	req := reconcile.Request{NamespacedName: client.ObjectKey{Namespace: "vms", Name: "web"}}
	if _, err := r.Reconcile(ctx, req); err != nil || creates != 1 {
		t.Fatalf("first reconcile: %v, %d creates", err, creates)
	}
	res, err := r.Reconcile(ctx, req)
	if err != nil || creates != 1 || res.RequeueAfter <= 0 || res.RequeueAfter > time.Second {
		t.Fatalf("reconcile while the cache lags: %+v, %v, %d creates; want a requeue within a second, no second create", res, err, creates)
	}
	lag = false
	if _, err := r.Reconcile(ctx, req); err != nil || creates != 1 {
		t.Fatalf("reconcile once the cache has it: %v, %d creates", err, creates)
	}
	if _, waits := r.created.Load("vms/web"); waits {
		t.Error("still waiting for a Service the cache shows")
	}

	// Gone for longer than the wait: created again.
	if err := c.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "vms", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	r.created.Store("vms/web", time.Now().Add(-createdCacheWait))
	if _, err := r.Reconcile(ctx, req); err != nil || creates != 2 {
		t.Fatalf("reconcile after the wait: %v, %d creates; want the Service created again", err, creates)
	}
}
