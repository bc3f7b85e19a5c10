// Package virttemplate is a compile-only stand-in for
// kubevirt.io/virt-template-client-go/virttemplate.
package virttemplate

import (
	"errors"

	"k8s.io/client-go/rest"
)

// Clientset mirrors the one method KubeVirt's informer factory calls.
type Clientset struct{}

// TemplateV1beta1Client mirrors the group client KubeVirt's informer factory uses.
type TemplateV1beta1Client struct{}

// NewForConfig always fails: the stand-in must never be used at run time.
func NewForConfig(*rest.Config) (*Clientset, error) {
	return nil, errors.New("virt-template client stand-in: not available in crdgen")
}

// TemplateV1beta1 returns the group client.
func (*Clientset) TemplateV1beta1() *TemplateV1beta1Client { return &TemplateV1beta1Client{} }

// RESTClient returns no client.
func (*TemplateV1beta1Client) RESTClient() rest.Interface { return nil }
