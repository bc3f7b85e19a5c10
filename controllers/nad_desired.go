package controllers

import (
	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// DesiredNAD is the istio-cni NetworkAttachmentDefinition virtmesh keeps in a
// mesh namespace: an empty config, which makes Multus run the istio-cni
// plugin configured on the node (domain-facts: Multus clusters). The spec is
// always written: some OpenShift builds reject a NAD without one.
func DesiredNAD(namespace, name string) *nadv1.NetworkAttachmentDefinition {
	return &nadv1.NetworkAttachmentDefinition{
		TypeMeta: metav1.TypeMeta{APIVersion: nadv1.SchemeGroupVersion.String(), Kind: "NetworkAttachmentDefinition"},
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: namespace,
			Labels: map[string]string{mesh.ManagedByLabel: mesh.ManagedByValue},
		},
		Spec: nadv1.NetworkAttachmentDefinitionSpec{Config: ""},
	}
}

// Managed reports whether virtmesh created obj (and so may change or delete it).
func Managed(obj metav1.Object) bool {
	return obj.GetLabels()[mesh.ManagedByLabel] == mesh.ManagedByValue
}

// nadUpToDate: have is virtmesh's and still has the empty config.
func nadUpToDate(have, want *nadv1.NetworkAttachmentDefinition) bool {
	return Managed(have) && have.Spec.Config == want.Spec.Config
}
