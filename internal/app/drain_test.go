package app

import (
	"context"
	"net/http"
	"testing"
	"time"
)

func TestDrainFailsReadinessThenStops(t *testing.T) {
	var d drain
	ready := d.checker(func(*http.Request) error { return nil })
	parent, stop := context.WithCancel(context.Background())
	ctx, cancel := d.context(parent, 300*time.Millisecond)
	defer cancel()
	if err := ready(nil); err != nil {
		t.Fatalf("not ready before SIGTERM: %v", err)
	}
	stop() // SIGTERM
	deadline := time.Now().Add(time.Second)
	for ready(nil) == nil {
		if time.Now().After(deadline) {
			t.Fatal("still ready after SIGTERM")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ctx.Err() != nil {
		t.Fatal("the manager stopped before the delay")
	}
	select {
	case <-ctx.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("the manager never stopped")
	}
}
