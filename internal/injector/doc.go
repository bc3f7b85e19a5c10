// Package injector reads an Istio (or Maistra) sidecar injector's
// configuration, as its ConfigMap holds it, and decides which Multus
// NetworkAttachmentDefinition the injector makes a pod reference: none
// (chained istio-cni, or no CNI), one shared NAD (Istio 1.19+ and OpenShift
// Service Mesh 3: default/istio-cni), one per namespace (Istio 1.18 and
// older), or Maistra's per-member NAD (OpenShift Service Mesh 2). It is pure:
// no API calls, so every fixture in shared/testdata/istio-injectors is a unit
// test.
package injector
