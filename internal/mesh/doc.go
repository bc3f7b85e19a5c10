// Package mesh decides, as pure functions of labels and configuration, whether
// a namespace or a VMI belongs in the Istio mesh. It mirrors the selection rules
// of Istio's own sidecar injector. The webhook and the controllers both call it:
// it is the one place that decides mesh membership.
package mesh
