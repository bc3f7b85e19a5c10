// Command webhook is a load program for virtmesh's admission webhook: it
// drives the webhook server over HTTPS with keep-alive connections at several
// concurrency levels, with a realistic mix of AdmissionReviews, and reports
// throughput, p50, p99 and max latency per level.
//
// By default it serves the webhook in-process on 127.0.0.1 with
// controller-runtime's webhook server, registered by webhook.Register as the
// manager registers it, with the default configuration. Two things differ
// from the manager: every namespace reads as labelled istio-injection=enabled
// (a fixed function instead of the manager's namespace cache), and TLS uses a
// serving certificate for 127.0.0.1 signed by a CA made for the run. With -url
// and -ca it drives a webhook that is already running elsewhere.
//
//	go run ./tests/load/webhook -clients 1,8,64 -duration 10s
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net/http"
	"os"
	goruntime "runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

func main() {
	var (
		levels   = flag.String("clients", "1,8,64", "comma-separated numbers of concurrent keep-alive clients")
		duration = flag.Duration("duration", 10*time.Second, "measured time per level")
		warmup   = flag.Duration("warmup", 2*time.Second, "unmeasured time before each level")
		url      = flag.String("url", "", "drive this webhook URL instead of an in-process server (needs -ca)")
		caFile   = flag.String("ca", "", "PEM CA bundle that signed the server at -url")
		rate     = flag.Int("rate", 0, "open loop: offer this many requests per second in total, spread over the clients "+
			"(latency counts from the time a request is emitted, so queueing for a free client shows); 0 means closed loop, each client sends as fast as it can")
		profile = flag.String("cpuprofile", "", "write a CPU profile of the whole run (server and clients) to this file")
	)
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	if *profile != "" {
		f, err := os.Create(*profile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "webhook load:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*levels, *duration, *warmup, *url, *caFile, *rate); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "webhook load:", err)
		os.Exit(1)
	}
}

func run(levels string, duration, warmup time.Duration, url, caFile string, rate int) error {
	var clients []int
	for _, s := range strings.Split(levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-clients: %q is not a positive number", s)
		}
		clients = append(clients, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var ca []byte
	switch {
	case url != "" && caFile == "":
		return fmt.Errorf("-url needs -ca")
	case url != "":
		var err error
		if ca, err = os.ReadFile(caFile); err != nil {
			return err
		}
	default:
		var err error
		if url, ca, err = serveInProcess(ctx); err != nil {
			return err
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("no certificate in the CA bundle")
	}
	bodies, err := reviews()
	if err != nil {
		return err
	}

	loop := "closed loop"
	if rate > 0 {
		loop = fmt.Sprintf("open loop at %d req/s", rate)
	}
	fmt.Printf("virtmesh webhook load: %s, GOMAXPROCS=%d, %d request kinds, %s, %s per level\n",
		url, goruntime.GOMAXPROCS(0), len(bodies), loop, duration)
	fmt.Printf("%8s %10s %12s %10s %10s %10s %8s\n", "clients", "requests", "req/s", "p50", "p99", "max", "errors")
	for _, n := range clients {
		tr := &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: n,
			MaxConnsPerHost:     n,
			ForceAttemptHTTP2:   false,
		}
		hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		drive(hc, url, bodies, n, rate, warmup) // warm the connections and the server
		r := drive(hc, url, bodies, n, rate, duration)
		tr.CloseIdleConnections()
		fmt.Printf("%8d %10d %12.0f %10s %10s %10s %8d\n", n, len(r.latencies),
			float64(len(r.latencies))/r.elapsed.Seconds(),
			percentile(r.latencies, 50), percentile(r.latencies, 99), percentile(r.latencies, 100), r.errors)
		if r.firstErr != nil {
			fmt.Printf("         first error: %v\n", r.firstErr)
		}
	}
	return nil
}
