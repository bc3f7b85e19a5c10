package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"
)

func TestEventQueueSendsWarningsFirstAndKeepsOrderWithinAType(t *testing.T) {
	q := newEventQueue()
	fake := record.NewFakeRecorder(100)
	rec := q.recorder(fake)
	ref := &corev1.ObjectReference{Kind: "VirtualMachine", Namespace: "ns", Name: "vm"}
	rec.Event(ref, corev1.EventTypeNormal, "ServiceCreated", "n1")
	rec.Eventf(ref, corev1.EventTypeNormal, "ServiceCreated", "n%d", 2)
	other := &corev1.ObjectReference{Kind: "VirtualMachine", Namespace: "ns", Name: "other"}
	rec.Event(other, corev1.EventTypeWarning, "NeedsRestart", "w1")
	rec.Event(other, corev1.EventTypeWarning, "Broken", "w2")
	for e, ok := q.next(); ok; e, ok = q.next() {
		q.send(e)
	}
	got := drain(fake)
	want := []string{"Warning NeedsRestart w1", "Warning Broken w2", "Normal ServiceCreated n1", "Normal ServiceCreated n2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sent %q, want %q", got, want)
	}
}

func TestEventQueueDropsNormalEventsBeyondItsBoundButKeepsWarnings(t *testing.T) {
	q := newEventQueue()
	q.maxNormals, q.maxWarnings = 2, 3
	fake := record.NewFakeRecorder(100)
	rec := q.recorder(fake)
	ref := &corev1.ObjectReference{Kind: "VirtualMachine", Namespace: "ns", Name: "vm"}
	normalBefore := testutil.ToFloat64(eventsDropped.WithLabelValues(corev1.EventTypeNormal))
	warningBefore := testutil.ToFloat64(eventsDropped.WithLabelValues(corev1.EventTypeWarning))
	for i := range 5 {
		rec.Eventf(ref, corev1.EventTypeNormal, "ServiceCreated", "n%d", i)
	}
	other := &corev1.ObjectReference{Kind: "VirtualMachine", Namespace: "ns", Name: "other"}
	for i := range 3 {
		rec.Eventf(other, corev1.EventTypeWarning, "NeedsRestart", "w%d", i)
	}
	rec.Eventf(other, corev1.EventTypeWarning, "NeedsRestart", "w%d", 3)
	if d := testutil.ToFloat64(eventsDropped.WithLabelValues(corev1.EventTypeNormal)) - normalBefore; d != 3 {
		t.Errorf("Normal drops counted %v, want 3", d)
	}
	if d := testutil.ToFloat64(eventsDropped.WithLabelValues(corev1.EventTypeWarning)) - warningBefore; d != 1 {
		t.Errorf("Warning drops counted %v, want 1", d)
	}
	q.stop(func(string, ...any) {})
	got := drain(fake)
	want := []string{"Warning NeedsRestart w0", "Warning NeedsRestart w1", "Warning NeedsRestart w2",
		"Normal ServiceCreated n0", "Normal ServiceCreated n1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sent %q, want the oldest of each type within the bounds: %q", got, want)
	}
}

func TestEventQueueSendsAtItsRateAndFlushesWhenStopped(t *testing.T) {
	q := newEventQueue()
	// One Event now, then one every hour: the rest only leave by the flush.
	q.limiter = rate.NewLimiter(rate.Every(time.Hour), 1)
	fake := record.NewFakeRecorder(100)
	rec := q.recorder(fake)
	ref := &corev1.ObjectReference{Kind: "VirtualMachineInstance", Namespace: "ns", Name: "vmi"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- q.Start(ctx) }()
	for i := range 3 {
		rec.Eventf(ref, corev1.EventTypeNormal, "ServiceCreated", "n%d", i)
	}
	select {
	case e := <-fake.Events:
		if e != "Normal ServiceCreated n0" {
			t.Fatalf("first = %q", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first Event was not sent")
	}
	if got := drain(fake); len(got) != 0 {
		t.Fatalf("sent %q beyond the rate", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := drain(fake)
	want := []string{"Normal ServiceCreated n1", "Normal ServiceCreated n2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("flushed %q, want %q", got, want)
	}
	// The manager stops the controllers after the queue: what they still
	// say goes straight on.
	rec.Event(ref, corev1.EventTypeWarning, "Broken", "late")
	if got := drain(fake); fmt.Sprint(got) != "[Warning Broken late]" {
		t.Errorf("an Event after the stop: sent %q", got)
	}
}

func TestEventQueueKeepsAnnotations(t *testing.T) {
	q := newEventQueue()
	fake := record.NewFakeRecorder(10)
	fake.IncludeObject = true
	ref := &corev1.ObjectReference{Kind: "VirtualMachine", Namespace: "ns", Name: "vm"}
	q.recorder(fake).AnnotatedEventf(ref, map[string]string{"k": "v"}, corev1.EventTypeNormal, "R", "m %s", "x")
	q.stop(func(string, ...any) {})
	got := drain(fake)
	if len(got) != 1 || !strings.Contains(got[0], "Normal R m x") || !strings.Contains(got[0], "map[k:v]") {
		t.Errorf("sent %q", got)
	}
}

func TestEventQueueLogsDropsAtMostOncePerInterval(t *testing.T) {
	q := newEventQueue()
	q.maxNormals = 0
	rec := q.recorder(record.NewFakeRecorder(10))
	ref := &corev1.ObjectReference{Kind: "VirtualMachine", Namespace: "ns", Name: "vm"}
	var lines []string
	info := func(msg string, kv ...any) { lines = append(lines, fmt.Sprint(kv...)) }
	if q.logDue() != nil {
		t.Error("a log is due with nothing dropped")
	}
	t0 := time.Now()
	rec.Event(ref, corev1.EventTypeNormal, "R", "1")
	rec.Event(ref, corev1.EventTypeNormal, "R", "2")
	q.logDrops(info, t0)
	rec.Event(ref, corev1.EventTypeNormal, "R", "3")
	q.logDrops(info, t0.Add(30*time.Second))
	if len(lines) != 1 || lines[0] != "normal2warning0" {
		t.Fatalf("logged %q, want one line for the first 2 drops", lines)
	}
	q.logDrops(info, t0.Add(time.Minute))
	if len(lines) != 2 || lines[1] != "normal1warning0" {
		t.Fatalf("logged %q, want a second line for the third drop a minute later", lines)
	}
	q.logDrops(info, t0.Add(3*time.Minute))
	if len(lines) != 2 {
		t.Errorf("logged %q with nothing new dropped", lines)
	}
}

func TestFIFOReleasesItsArrayWhenDrained(t *testing.T) {
	var f fifo
	for i := range 3 {
		f.push(queuedEvent{message: fmt.Sprint(i)})
	}
	for i := range 3 {
		if e := f.pop(); e.message != fmt.Sprint(i) {
			t.Fatalf("pop %d = %q", i, e.message)
		}
	}
	if f.items != nil {
		t.Error("the drained queue still holds its array")
	}
}

func TestEventQueueKeepsEachObjectsEventsInOrder(t *testing.T) {
	q := newEventQueue()
	fake := record.NewFakeRecorder(100)
	rec := q.recorder(fake)
	a := &corev1.ObjectReference{Kind: "VirtualMachine", Namespace: "ns", Name: "a", UID: "ua"}
	b := &corev1.ObjectReference{Kind: "VirtualMachine", Namespace: "ns", Name: "b", UID: "ub"}
	rec.Event(b, corev1.EventTypeNormal, "ServiceCreated", "b1")
	rec.Event(a, corev1.EventTypeNormal, "OnboardingStarted", "a1")
	rec.Event(b, corev1.EventTypeNormal, "ServiceUpdated", "b2")
	rec.Event(a, corev1.EventTypeNormal, "MeshStateMeshed", "a2")
	rec.Event(a, corev1.EventTypeWarning, "OnboardingFailed", "a3")
	rec.Event(a, corev1.EventTypeNormal, "ServiceUpdated", "a4")
	for e, ok := q.next(); ok; e, ok = q.next() {
		q.send(e)
	}
	got := drain(fake)
	// a's Warning goes before b's Events, after a's earlier ones.
	want := []string{"Normal OnboardingStarted a1", "Normal MeshStateMeshed a2", "Warning OnboardingFailed a3",
		"Normal ServiceCreated b1", "Normal ServiceUpdated b2", "Normal ServiceUpdated a4"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sent %q, want %q", got, want)
	}
	if len(q.normalsFor) != 0 || len(q.normalsIn) != 0 {
		t.Errorf("counts left after the queue emptied: %v %v", q.normalsFor, q.normalsIn)
	}
}

func TestEventQueueStopHandsOnABoundedNumberAndCountsTheRest(t *testing.T) {
	q := newEventQueue()
	fake := record.NewFakeRecorder(2 * stopFlush)
	rec := q.recorder(fake)
	ref := &corev1.ObjectReference{Kind: "VirtualMachine", Namespace: "ns", Name: "vm"}
	for i := range stopFlush {
		rec.Eventf(ref, corev1.EventTypeNormal, "ServiceCreated", "n%d", i)
	}
	other := &corev1.ObjectReference{Kind: "VirtualMachine", Namespace: "ns", Name: "other"}
	rec.Event(other, corev1.EventTypeWarning, "NeedsRestart", "w")
	before := testutil.ToFloat64(eventsDropped.WithLabelValues(corev1.EventTypeNormal))
	var lines []string
	q.stop(func(msg string, kv ...any) { lines = append(lines, fmt.Sprint(kv...)) })
	got := drain(fake)
	if len(got) != stopFlush || got[0] != "Warning NeedsRestart w" || got[stopFlush-1] != fmt.Sprintf("Normal ServiceCreated n%d", stopFlush-2) {
		t.Errorf("handed on %d, the last %q; want %d, in order", len(got), got[len(got)-1], stopFlush)
	}
	if d := testutil.ToFloat64(eventsDropped.WithLabelValues(corev1.EventTypeNormal)) - before; d != 1 {
		t.Errorf("counted %v dropped at the stop, want 1", d)
	}
	if len(lines) != 1 || lines[0] != "normal1warning0" {
		t.Errorf("logged %q at the stop, want the drop", lines)
	}
}

func TestEventQueueBoundsEachNamespacesNormalEvents(t *testing.T) {
	q := newEventQueue()
	q.maxNormalsPerNamespace = 2
	fake := record.NewFakeRecorder(100)
	rec := q.recorder(fake)
	noisy := &corev1.ObjectReference{Kind: "NetworkAttachmentDefinition", Namespace: "tenant-a", Name: "istio-cni"}
	quiet := &corev1.ObjectReference{Kind: "VirtualMachine", Namespace: "tenant-b", Name: "vm"}
	before := testutil.ToFloat64(eventsDropped.WithLabelValues(corev1.EventTypeNormal))
	for i := range 5 {
		rec.Eventf(noisy, corev1.EventTypeNormal, "NetworkAttachmentDefinitionRestored", "r%d", i)
	}
	rec.Event(quiet, corev1.EventTypeNormal, "ServiceCreated", "b")
	rec.Event(noisy, corev1.EventTypeWarning, "NetworkAttachmentDefinitionNotIstioCNI", "w")
	if d := testutil.ToFloat64(eventsDropped.WithLabelValues(corev1.EventTypeNormal)) - before; d != 3 {
		t.Errorf("dropped %v of tenant-a's Normal Events, want 3", d)
	}
	q.stop(func(string, ...any) {})
	got := drain(fake)
	want := []string{"Normal NetworkAttachmentDefinitionRestored r0", "Normal NetworkAttachmentDefinitionRestored r1",
		"Warning NetworkAttachmentDefinitionNotIstioCNI w", "Normal ServiceCreated b"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sent %q, want %q", got, want)
	}
	// Sent Events free their namespace's room.
	q2 := newEventQueue()
	q2.maxNormalsPerNamespace = 1
	rec2 := q2.recorder(fake)
	rec2.Event(noisy, corev1.EventTypeNormal, "R", "1")
	q2.send(mustNext(t, q2))
	rec2.Event(noisy, corev1.EventTypeNormal, "R", "2")
	if e := mustNext(t, q2); e.message != "2" {
		t.Errorf("next = %q, want the second Event queued once the first was sent", e.message)
	}
}

func mustNext(t *testing.T, q *eventQueue) queuedEvent {
	t.Helper()
	e, ok := q.next()
	if !ok {
		t.Fatal("nothing queued")
	}
	return e
}

// Events about objects in a namespace being deleted are not
// sent (the API server would refuse them), and cost no rate.
func TestEventQueueSendsNothingIntoANamespaceBeingDeleted(t *testing.T) {
	q := newEventQueue()
	q.limiter = rate.NewLimiter(rate.Every(time.Hour), 2) // two sends, then none for an hour
	q.gone = func(_ context.Context, ns string) bool { return ns == "deleted" }
	fake := record.NewFakeRecorder(100)
	rec := q.recorder(fake)
	dead := &corev1.ObjectReference{Kind: "VirtualMachine", Namespace: "deleted", Name: "vm"}
	alive := &corev1.ObjectReference{Kind: "VirtualMachine", Namespace: "live", Name: "vm"}
	cluster := &corev1.ObjectReference{Kind: "Namespace", Name: "deleted"} // stored in default
	for i := range 3 {
		rec.Eventf(dead, corev1.EventTypeWarning, "NeedsRestart", "dead%d", i)
	}
	rec.Event(alive, corev1.EventTypeNormal, "ServiceCreated", "alive")
	rec.Event(cluster, corev1.EventTypeNormal, "SharedNetworkAttachmentDefinitionMissing", "about the namespace")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- q.Start(ctx) }()
	var got []string
	for len(got) < 2 {
		select {
		case e := <-fake.Events:
			got = append(got, e)
		case <-time.After(10 * time.Second):
			t.Fatalf("sent %q; the two Events outside the deleted namespace did not go out at the rate of two", got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got = append(got, drain(fake)...)
	want := []string{"Normal ServiceCreated alive", "Normal SharedNetworkAttachmentDefinitionMissing about the namespace"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sent %q, want %q", got, want)
	}
}
