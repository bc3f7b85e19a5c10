package testkit

import (
	"slices"
	"sync"

	"k8s.io/client-go/rest"
)

// Warnings collects the API server's warnings, as kubectl shows them to the
// user. Set it as a rest.Config's WarningHandler; it is safe for concurrent
// use.
type Warnings struct {
	mu       sync.Mutex
	messages []string
}

var _ rest.WarningHandler = &Warnings{}

// HandleWarningHeader records one warning.
func (w *Warnings) HandleWarningHeader(_ int, _ string, message string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.messages = append(w.messages, message)
}

// All returns the warnings so far, oldest first.
func (w *Warnings) All() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.messages)
}
