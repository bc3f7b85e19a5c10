package integration

import (
	"context"
	"errors"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"

	"github.com/virtmesh/virtmesh/internal/app"
	"github.com/virtmesh/virtmesh/internal/testkit"
	"github.com/virtmesh/virtmesh/internal/testkit/local"
)

// runningManager is a virtmesh manager started through app.Run, the same entry
// point cmd/virtmesh uses.
type runningManager struct {
	opts    *app.Options
	cancel  context.CancelFunc
	done    chan error
	stopped bool
	err     error
}

// startManager runs virtmesh with cfg, serving the webhook where the control
// plane's webhook configurations point, and waits until it reports ready.
// tweaks change the options first.
func startManager(cfg *rest.Config, tweaks ...func(*app.Options)) *runningManager {
	GinkgoHelper()
	m := startManagerNoWait(cfg, tweaks...)
	Eventually(func(g Gomega) {
		select {
		case err := <-m.done:
			StopTrying("the manager stopped while starting").Wrap(err).Now()
		default:
		}
		g.Expect(m.probe("/readyz")).To(Equal(http.StatusOK))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	return m
}

// startManagerNoWait starts the manager like startManager without waiting
// for it to be ready.
func startManagerNoWait(cfg *rest.Config, tweaks ...func(*app.Options)) *runningManager {
	GinkgoHelper()
	host, port, certDir := cp.WebhookServing()
	o := app.NewOptions()
	o.WebhookHost, o.WebhookPort, o.WebhookCertDir = host, port, certDir
	o.MetricsBindAddress = testkit.FreeAddress()
	o.HealthProbeBindAddress = testkit.FreeAddress()
	o.LeaderElect = true
	o.LeaderElectionNamespace = local.Namespace
	o.GracefulShutdownTimeout = 10 * time.Second
	o.ShutdownDelay = 0 // specs that test draining set it
	o.Controllers.NADCleanupDelay = 2 * time.Second
	o.Controllers.OnboardingRetryDelay = 2 * time.Second
	for _, t := range tweaks {
		t(o)
	}

	ctx, cancel := context.WithCancel(context.Background())
	m := &runningManager{opts: o, cancel: cancel, done: make(chan error, 1)}
	go func() {
		defer GinkgoRecover()
		m.done <- app.Run(ctx, cfg, o)
	}()
	return m
}

// probe returns the HTTP status of a health endpoint, or an error.
func (m *runningManager) probe(path string) (int, error) {
	return httpStatus("http://" + m.opts.HealthProbeBindAddress + path)
}

// stop cancels the manager and waits for Run to return; stopping a stopped
// manager returns what the first stop did.
func (m *runningManager) stop(ctx context.Context) error {
	if m.stopped {
		return m.err
	}
	m.cancel()
	select {
	case m.err = <-m.done:
		m.stopped = true
		return m.err
	case <-ctx.Done():
		return errors.New("manager did not stop in time")
	}
}

func httpStatus(url string) (int, error) {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(url)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	return resp.StatusCode, nil
}
