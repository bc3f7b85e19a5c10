// Package app wires virtmesh's single manager binary: it turns command-line
// options into a controller-runtime manager that serves the VMI mutating webhook
// and runs the controllers. cmd/virtmesh and the integration suites both start
// virtmesh through Run, so the suites exercise exactly what ships.
package app
