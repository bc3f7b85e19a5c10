package controllers

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// eventQueue sits between virtmesh's controllers and client-go's event
// recorder. client-go holds at most 1,000 Events waiting to be sent, sends
// them one at a time, and beyond that drops new ones, mostly without a
// word, Warnings as readily as anything. virtmesh starting on a cluster with
// thousands of apps has more than that to say at once (each Service it
// creates is told to the VMs it serves: at 20,000 VMIs the load program saw
// 8,540 of 20,400 Events reach the API server), and a Warning lost then
// (NeedsRestart, Broken) is never said again: the state it reports does not
// change. So Events wait here and are handed on at a rate the API server
// takes one request at a time, Warnings first (but never before an earlier
// Event about the same object); when too many Normal Events
// wait, the newest Normal ones are dropped, counted in
// virtmesh_events_dropped_total and logged (once a minute at most).
type eventQueue struct {
	mu       sync.Mutex
	warnings fifo
	normals  fifo
	// maxWarnings and maxNormals bound what waits (memory: a few hundred
	// bytes per Event).
	maxWarnings, maxNormals int
	limiter                 *rate.Limiter
	wake                    chan struct{}
	// normalsFor counts the queued Normal Events of each object
	// (aboutObject), so that a Warning about an object goes out after them.
	normalsFor map[string]int
	// normalsIn counts the queued Normal Events of each namespace, so that
	// one namespace (a tenant editing virtmesh's objects in a loop, say)
	// cannot fill the queue for all: at most maxNormalsPerNamespace.
	normalsIn              map[string]int
	maxNormalsPerNamespace int
	// stopped: Start has returned; Events go straight to client-go (the
	// manager stops the controllers that send them after this queue).
	stopped bool
	// gone, when set, says whether a namespace is being deleted:
	// the API server refuses an Event there (and client-go logs an error
	// for each), so such Events are not sent.
	gone func(ctx context.Context, namespace string) bool
	// dropped counts drops not yet logged, by type.
	dropped  map[string]int
	lastLog  time.Time
	logEvery time.Duration
}

// Defaults: 50 Events a second is well within what one sender achieves
// against a busy API server (about 100 a second on the load program's
// shared 2 cores), a burst of 200 leaves client-go's own queue of 1,000
// room, and 5,000 Normal Events are 100 s of sending.
const (
	eventRate       = 50
	eventBurst      = 200
	maxQueuedNormal = 5000
	// maxQueuedNormalPerNamespace: a fifth of the queue per namespace.
	maxQueuedNormalPerNamespace = maxQueuedNormal / 5
	maxQueuedWarn               = 50000
	// stopFlush is how many waiting Events are handed to client-go when the
	// queue stops (Warnings first): client-go takes 1,000 at once and logs
	// an error for each one beyond; the rest are counted as dropped.
	stopFlush = 900
)

var eventsDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "virtmesh_events_dropped_total",
	Help: "Events virtmesh did not send, by type (Normal, Warning), because more were waiting to be sent than it keeps " +
		"(5,000 Normal, 1,000 of them per namespace, 50,000 Warning; sent at 50 a second, Warnings first). What they said stays visible in " +
		"virtmesh_vmis and kubectl virtmesh status.",
}, []string{"type"})

func newEventQueue() *eventQueue {
	return &eventQueue{
		maxWarnings: maxQueuedWarn,
		maxNormals:  maxQueuedNormal,
		limiter:     rate.NewLimiter(eventRate, eventBurst),
		wake:        make(chan struct{}, 1),
		dropped:     map[string]int{},
		normalsFor:  map[string]int{},
		normalsIn:   map[string]int{},

		maxNormalsPerNamespace: maxQueuedNormalPerNamespace,
		logEvery:               time.Minute,
	}
}

// queuedEvent is one Event for one recorder. Every caller passes an
// ObjectReference (built for the Event), so nothing larger is held.
type queuedEvent struct {
	to                   record.EventRecorder
	object               runtime.Object
	annotations          map[string]string
	typ, reason, message string
	// key and namespace are aboutObject(object).
	key, namespace string
}

// aboutObject names the object an Event is about and its namespace (""
// for anything but an ObjectReference, which every controller passes).
func aboutObject(o runtime.Object) (key, namespace string) {
	ref, ok := o.(*corev1.ObjectReference)
	if !ok || ref == nil {
		return "", ""
	}
	return ref.Kind + "/" + ref.Namespace + "/" + ref.Name + "/" + string(ref.UID), ref.Namespace
}

// fifo is a queue of Events; popped slots are released as it drains.
type fifo struct{ items []queuedEvent }

// take removes the Events about key, in order.
func (f *fifo) take(key string) []queuedEvent {
	var taken []queuedEvent
	kept := f.items[:0]
	for _, e := range f.items {
		if e.key == key {
			taken = append(taken, e)
		} else {
			kept = append(kept, e)
		}
	}
	clear(f.items[len(kept):])
	f.items = kept
	if len(f.items) == 0 {
		f.items = nil
	}
	return taken
}

func (f *fifo) len() int { return len(f.items) }

func (f *fifo) push(e queuedEvent) { f.items = append(f.items, e) }

func (f *fifo) pop() queuedEvent {
	e := f.items[0]
	f.items[0] = queuedEvent{}
	f.items = f.items[1:]
	if len(f.items) == 0 {
		f.items = nil // let the drained backing array go
	}
	return e
}

// recorder returns an EventRecorder that queues its Events here before
// handing them to to.
func (q *eventQueue) recorder(to record.EventRecorder) record.EventRecorder {
	return &queuedRecorder{q: q, to: to}
}

func (q *eventQueue) add(e queuedEvent) {
	e.key, e.namespace = aboutObject(e.object)
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		q.send(e)
		return
	}
	warning := e.typ == corev1.EventTypeWarning
	queue, limit := &q.normals, q.maxNormals
	if warning {
		queue, limit = &q.warnings, q.maxWarnings
	}
	if queue.len() >= limit || !warning && q.normalsIn[e.namespace] >= q.maxNormalsPerNamespace {
		q.dropped[e.typ]++
		q.mu.Unlock()
		eventsDropped.WithLabelValues(e.typ).Inc()
		return
	}
	if warning && e.key != "" && q.normalsFor[e.key] > 0 {
		// Warnings go first, but not before what was said earlier about
		// the same object: its Events keep their order (client-go stamps
		// each when it is handed on).
		for _, n := range q.normals.take(e.key) {
			q.countNormal(n, -1)
			q.warnings.push(n)
		}
	}
	queue.push(e)
	if !warning {
		q.countNormal(e, 1)
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// countNormal adds d to the counts of queued Normal Events of e's object
// and namespace (q.mu held).
func (q *eventQueue) countNormal(e queuedEvent, d int) {
	if e.key != "" {
		if q.normalsFor[e.key] += d; q.normalsFor[e.key] <= 0 {
			delete(q.normalsFor, e.key)
		}
	}
	if q.normalsIn[e.namespace] += d; q.normalsIn[e.namespace] <= 0 {
		delete(q.normalsIn, e.namespace)
	}
}

// next returns the next Event to send, Warnings first.
func (q *eventQueue) next() (queuedEvent, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.warnings.len() > 0:
		return q.warnings.pop(), true
	case q.normals.len() > 0:
		e := q.normals.pop()
		q.countNormal(e, -1)
		return e, true
	}
	return queuedEvent{}, false
}

// Start hands Events on until ctx ends. Then it hands on at once up to
// stopFlush of those still waiting (Warnings first; client-go sends what it
// holds while the manager stops, as far as it gets) and counts the rest as
// dropped; every later Event goes straight to client-go (the manager stops
// this queue, which is not leader-elected, before the controllers).
func (q *eventQueue) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("events")
	for {
		e, ok := q.next()
		if !ok {
			q.logDrops(logger.Info, time.Now())
			select {
			case <-q.wake:
			case <-q.logDue():
			case <-ctx.Done():
				q.stop(logger.Info)
				return nil
			}
			continue
		}
		if e.namespace != "" && q.gone != nil && q.gone(ctx, e.namespace) {
			logger.V(1).Info("not sent: its namespace is being deleted", "namespace", e.namespace, "reason", e.reason)
			continue
		}
		if err := q.limiter.Wait(ctx); err != nil {
			q.send(e)
			q.stop(logger.Info)
			return nil
		}
		q.send(e)
		q.logDrops(logger.Info, time.Now())
	}
}

// NeedLeaderElection: every replica hands on its own Events (only the
// leader's controllers send any).
func (q *eventQueue) NeedLeaderElection() bool { return false }

func (q *eventQueue) send(e queuedEvent) {
	if e.annotations != nil {
		e.to.AnnotatedEventf(e.object, e.annotations, e.typ, e.reason, "%s", e.message)
		return
	}
	e.to.Event(e.object, e.typ, e.reason, e.message)
}

// stop hands on at most stopFlush waiting Events, drops the rest (counted)
// and logs the drops not logged yet.
func (q *eventQueue) stop(info func(string, ...any)) {
	q.mu.Lock()
	q.stopped = true
	q.mu.Unlock()
	for sent := 0; ; sent++ {
		e, ok := q.next()
		if !ok {
			break
		}
		if sent < stopFlush {
			q.send(e)
			continue
		}
		q.mu.Lock()
		q.dropped[e.typ]++
		q.mu.Unlock()
		eventsDropped.WithLabelValues(e.typ).Inc()
	}
	q.logDrops(info, time.Now().Add(q.logEvery)) // the last word, whenever the one before
}

// logDue fires when unlogged drops may be logged (never when there are none).
func (q *eventQueue) logDue() <-chan time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.dropped) == 0 {
		return nil
	}
	return time.After(max(q.logEvery-time.Since(q.lastLog), 0))
}

// logDrops logs the drops since the last such line, at most once per
// q.logEvery.
func (q *eventQueue) logDrops(info func(string, ...any), now time.Time) {
	q.mu.Lock()
	if len(q.dropped) == 0 || now.Sub(q.lastLog) < q.logEvery {
		q.mu.Unlock()
		return
	}
	normal, warning := q.dropped[corev1.EventTypeNormal], q.dropped[corev1.EventTypeWarning]
	clear(q.dropped)
	q.lastLog = now
	q.mu.Unlock()
	info("dropped Events: more were waiting to be sent than virtmesh keeps (see virtmesh_events_dropped_total); "+
		"virtmesh_vmis and kubectl virtmesh status still show every VM's state", "normal", normal, "warning", warning)
}

// queuedRecorder is the record.EventRecorder the controllers use.
type queuedRecorder struct {
	q  *eventQueue
	to record.EventRecorder
}

func (r *queuedRecorder) Event(object runtime.Object, eventtype, reason, message string) {
	r.q.add(queuedEvent{to: r.to, object: object, typ: eventtype, reason: reason, message: message})
}

func (r *queuedRecorder) Eventf(object runtime.Object, eventtype, reason, messageFmt string, args ...any) {
	r.Event(object, eventtype, reason, fmt.Sprintf(messageFmt, args...))
}

func (r *queuedRecorder) AnnotatedEventf(object runtime.Object, annotations map[string]string, eventtype, reason, messageFmt string,
	args ...any) {
	r.q.add(queuedEvent{to: r.to, object: object, annotations: annotations, typ: eventtype, reason: reason,
		message: fmt.Sprintf(messageFmt, args...)})
}
