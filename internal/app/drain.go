package app

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

// drain makes a rolling update or a node drain invisible to the API server:
// when virtmesh is told to stop (SIGTERM), its readiness fails at once, so the
// endpoints controller takes the replica out of the webhook Service, while the
// webhook goes on answering for --shutdown-delay (the API server may still
// send to the old endpoint for a few seconds). Only then does the manager
// stop, letting in-flight admissions finish (--graceful-shutdown-timeout).
type drain struct {
	draining atomic.Bool
}

// checker fails readiness while draining, and otherwise asks next.
func (d *drain) checker(next healthz.Checker) healthz.Checker {
	return func(req *http.Request) error {
		if d.draining.Load() {
			return errors.New("shutting down: draining the webhook")
		}
		return next(req)
	}
}

// context returns a context for the manager that ends delay after parent
// does, marking the replica as draining meanwhile.
func (d *drain) context(parent context.Context, delay time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	go func() {
		select {
		case <-parent.Done():
		case <-ctx.Done():
			return
		}
		d.draining.Store(true)
		if delay > 0 {
			ctrl.Log.WithName("shutdown").Info("not ready; serving admissions until endpoints drain", "delay", delay)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
			}
		}
		cancel()
	}()
	return ctx, cancel
}
