package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The API server sends objects of at most 3 MiB; an AdmissionReview adds
// the request's envelope around the object.
const (
	// DefaultMaxRequestBytes is the largest review the webhook reads.
	DefaultMaxRequestBytes int64 = 4 << 20
	// DefaultMaxInFlightBytes is how many bytes of reviews it handles at
	// once. Decoding a review costs up to about 15 times its size (a VMI of
	// 3 MB made of a hundred thousand tiny labels: about 45 MB), so two
	// reviews of the largest size fit at once (under 100 MB), and hundreds
	// of ordinary ones (a few KB each) never wait.
	DefaultMaxInFlightBytes int64 = 8 << 20
)

// limitedTotal counts reviews the webhook did not handle because of its limits.
var limitedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "virtmesh_webhook_requests_limited_total",
	Help: "Requests to the VMI webhook refused by its limits, by reason: too_large (the body is over --webhook-max-request-bytes), " +
		"busy (the caller gave up while --webhook-max-in-flight-bytes of reviews were being handled).",
}, []string{"reason"})

func init() {
	metrics.Registry.MustRegister(limitedTotal)
}

// limitRequests bounds what reviews can cost: a body over maxBytes is
// refused (unread when its length is announced), and reviews wait while
// inFlight bytes of others are being handled; a small review never waits
// behind a large one that does not fit yet. Every caller can
// reach the webhook's port, not only the API server (the API server presents
// no client certificate unless configured to), and a review is decoded
// whole before anything else happens: without these limits a few callers
// sending megabyte-sized reviews at once would take the replica's memory,
// and with failurePolicy Fail, every VMI creation in the mesh with it.
func limitRequests(next http.Handler, maxBytes, inFlight int64) http.Handler {
	sem := &bytesLimiter{limit: inFlight, freed: make(chan struct{})}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBytes {
			limitedTotal.WithLabelValues("too_large").Inc()
			http.Error(w, fmt.Sprintf("virtmesh: admission review of %d bytes is over the webhook's limit of %d (--webhook-max-request-bytes)",
				r.ContentLength, maxBytes), http.StatusRequestEntityTooLarge)
			return
		}
		// The body is read before the review counts against inFlight, and
		// within bodyReadTimeout: a caller that announces a large body and
		// sends it slowly, or not at all, holds no room and no connection
		// for long. What counts is what was received.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyReadTimeout))
		body, err := readBody(w, r, maxBytes)
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			limitedTotal.WithLabelValues("too_large").Inc()
			http.Error(w, fmt.Sprintf("virtmesh: admission review over the webhook's limit of %d bytes (--webhook-max-request-bytes)", maxBytes),
				http.StatusRequestEntityTooLarge)
			return
		case err != nil:
			http.Error(w, "virtmesh: reading the admission review: "+err.Error(), http.StatusBadRequest)
			return
		}
		weight := int64(len(body))
		if err := sem.acquire(r.Context(), weight); err != nil {
			limitedTotal.WithLabelValues("busy").Inc()
			http.Error(w, "virtmesh: webhook busy: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		defer sem.release(weight)
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), weight
		next.ServeHTTP(w, r)
	})
}

// readBody reads r's body, at most maxBytes, into a buffer of its announced
// length when it has one.
func readBody(w http.ResponseWriter, r *http.Request, maxBytes int64) ([]byte, error) {
	in := http.MaxBytesReader(w, r.Body, maxBytes)
	if r.ContentLength < 0 {
		return io.ReadAll(in)
	}
	body := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(in, body); err != nil {
		return nil, err
	}
	return body, nil
}

// bodyReadTimeout bounds how long a review's body may take to arrive: the
// API server sends it at once, and waits at most 30 s for the answer.
const bodyReadTimeout = 10 * time.Second

// bytesLimiter lets reviews through while their bytes fit in limit. Unlike
// a FIFO semaphore, whatever fits goes, so the reviews the API server sends
// (a few KB) pass while large ones wait for room.
type bytesLimiter struct {
	mu          sync.Mutex
	used, limit int64
	freed       chan struct{} // closed (and replaced) when bytes are released
}

func (l *bytesLimiter) acquire(ctx context.Context, n int64) error {
	for {
		l.mu.Lock()
		if l.used+n <= l.limit {
			l.used += n
			l.mu.Unlock()
			return nil
		}
		freed := l.freed
		l.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (l *bytesLimiter) release(n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.used -= n
	close(l.freed)
	l.freed = make(chan struct{})
}

// validateLimits checks the limits' flags.
func validateLimits(maxBytes, inFlight int64) error {
	switch {
	case maxBytes < 64<<10:
		return fmt.Errorf("--webhook-max-request-bytes must be at least 65536, got %d", maxBytes)
	case inFlight < maxBytes:
		return errors.New("--webhook-max-in-flight-bytes must be at least --webhook-max-request-bytes")
	}
	return nil
}
