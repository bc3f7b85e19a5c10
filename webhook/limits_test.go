package webhook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestLimitRequests(t *testing.T) {
	var running, most atomic.Int64
	release := make(chan struct{})
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		<-release
	})
	const maxBytes, inFlight = 100 << 10, 250 << 10
	h := limitRequests(next, maxBytes, inFlight)

	// Over the limit: refused unread.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/", bytes.NewReader(make([]byte, maxBytes+1))))
	if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "--webhook-max-request-bytes") {
		t.Errorf("too large: %d %s", rec.Code, rec.Body)
	}
	// A body of unknown length is cut at the limit.
	req := httptest.NewRequest("POST", "/", io.MultiReader(bytes.NewReader(make([]byte, maxBytes+1))))
	req.ContentLength = -1
	rec = httptest.NewRecorder()
	close(release)
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("unknown length over the limit: %d", rec.Code)
	}
	release = make(chan struct{})

	// Two reviews of the largest size fit at once, a third waits, small
	// ones pass beside them.
	done := make(chan int, 4)
	send := func(size int, ctx context.Context) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/", bytes.NewReader(make([]byte, size))).WithContext(ctx))
		done <- rec.Code
	}
	for range 3 {
		go send(maxBytes, context.Background())
	}
	deadline := time.Now().Add(10 * time.Second)
	for running.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	go send(1000, context.Background())
	for running.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if n := running.Load(); n != 3 {
		t.Fatalf("%d reviews handled at once, want 2 large and 1 small", n)
	}
	// A caller that gives up while waiting is answered busy.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/", bytes.NewReader(make([]byte, maxBytes))).WithContext(ctx))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("gave up waiting: %d", rec.Code)
	}
	close(release)
	for range 4 {
		select {
		case code := <-done:
			if code != http.StatusOK {
				t.Errorf("status %d", code)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a review never finished")
		}
	}
	if most.Load() != 3 {
		t.Errorf("at most %d at once, want 3", most.Load())
	}
}

// Callers that announce large bodies and send nothing hold no room: the
// reviews the API server sends still pass at once.
func TestSlowBodiesHoldNoRoom(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	srv := httptest.NewServer(limitRequests(next, DefaultMaxRequestBytes, DefaultMaxInFlightBytes))
	defer srv.Close()
	for range 4 {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n{", DefaultMaxRequestBytes); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // the four are being read
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL, strings.NewReader(`{"small":true}`))
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("a small review behind four stalled large ones: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d", resp.StatusCode)
	}
}
