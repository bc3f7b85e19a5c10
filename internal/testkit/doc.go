// Package testkit holds the objects every test, load program and the demo
// build: seed 004's VM and VMI (one YAML, seed004.yaml, also a golden input
// of the webhook), the small, large, plain and meshed VMIs and VMs the suites
// create, a collector of the API server's warnings, and a free loopback
// address.
//
// It is pure: no client calls, no processes. It must not import the webhook,
// the controllers or internal/app, whose own tests import it. Running virtmesh
// on a local control plane is internal/testkit/local.
package testkit
