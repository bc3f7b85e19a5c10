// Package controlplane starts a real Kubernetes control plane on this machine:
// etcd and kube-apiserver through controller-runtime's envtest, plus
// kube-controller-manager running the garbage-collector and namespace
// controllers, which envtest alone lacks. The binaries are the pinned ones
// hack/controlplane.sh builds from source into bin/. The integration suites
// and the local demo both use it.
package controlplane
