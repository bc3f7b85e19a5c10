package integration

import (
	"net/http"
	"strings"
	"sync"

	"k8s.io/client-go/rest"
)

// writeCounter counts the write requests (POST, PUT, PATCH, DELETE) a client
// sends, by method and path, leaving out the leader-election Lease renewals:
// a no-op server-side apply is a PATCH and counts.
type writeCounter struct {
	mu     sync.Mutex
	writes map[string]int
}

// wrap returns cfg with every request counted.
func (w *writeCounter) wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			if req.Method != http.MethodGet && !strings.Contains(req.URL.Path, "/leases/") {
				w.mu.Lock()
				if w.writes == nil {
					w.writes = map[string]int{}
				}
				w.writes[req.Method+" "+req.URL.Path]++
				w.mu.Unlock()
			}
			return rt.RoundTrip(req)
		})
	})
	return cfg
}

// snapshot returns the writes counted so far.
func (w *writeCounter) snapshot() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]int, len(w.writes))
	for k, v := range w.writes {
		out[k] = v
	}
	return out
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
