package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
)

type result struct {
	latencies []time.Duration
	elapsed   time.Duration
	errors    int64
	firstErr  error
}

// drive runs n clients for d. In a closed loop (rate 0) each sends the
// request kinds in turn, starting at a different one, as fast as it can. In an
// open loop a pacer emits rate requests per second and the clients take them;
// a request's latency counts from its emission, so time spent waiting for a
// free client is measured too (no coordinated omission).
func drive(hc *http.Client, url string, bodies [][]byte, n, rate int, d time.Duration) result {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		all      []time.Duration
		errs     atomic.Int64
		firstErr atomic.Value
	)
	start := time.Now()
	deadline := start.Add(d)
	var schedule chan time.Time
	if rate > 0 {
		schedule = make(chan time.Time, rate*int(d/time.Second+1))
		go func() {
			defer close(schedule)
			interval := time.Second / time.Duration(rate)
			for at := start; at.Before(deadline); at = at.Add(interval) {
				time.Sleep(time.Until(at))
				// The request arrives when the pacer wakes: this VM's timers
				// oversleep by up to milliseconds, which is no fault of the server.
				schedule <- time.Now()
			}
		}()
	}
	for c := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<14)
			send := func(i int, t0 time.Time) {
				err := post(hc, url, bodies[i%len(bodies)])
				lat = append(lat, time.Since(t0))
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
			if schedule != nil {
				for i := c; ; i += n {
					at, ok := <-schedule
					if !ok {
						break
					}
					send(i, at)
				}
			} else {
				for i := c; time.Now().Before(deadline); i++ {
					send(i, time.Now())
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := result{latencies: all, elapsed: time.Since(start), errors: errs.Load()}
	if e, ok := firstErr.Load().(error); ok {
		r.firstErr = e
	}
	return r
}

func post(hc *http.Client, url string, body []byte) error {
	resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&review); err != nil {
		return fmt.Errorf("decoding response: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body) // let the connection be reused
	if resp.StatusCode != http.StatusOK || review.Response == nil || !review.Response.Allowed {
		return fmt.Errorf("unexpected response: HTTP %d %+v", resp.StatusCode, review.Response)
	}
	return nil
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := (len(d)*p + 99) / 100
	i = min(max(i-1, 0), len(d)-1)
	return d[i].Round(time.Microsecond)
}
