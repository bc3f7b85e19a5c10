package testkit

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

func TestWarnings(t *testing.T) {
	w := &Warnings{}
	if w.All() != nil {
		t.Fatalf("new collector holds %v", w.All())
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() { w.HandleWarningHeader(299, "-", fmt.Sprint(i)) })
	}
	wg.Wait()
	got := w.All()
	if len(got) != 50 {
		t.Fatalf("got %d warnings, want 50", len(got))
	}
	got[0] = "changed"
	if slices.Contains(w.All(), "changed") {
		t.Error("All returns the collector's own slice")
	}
}
