// Package webhook owns the VMI mutating admission webhook: MutateVMI decides
// and applies every change as a plain function (mutation.go, binding.go,
// labels.go); handler.go only decodes the AdmissionReview, calls it, and
// returns the JSON patch between the object as sent and as mutated.
package webhook
