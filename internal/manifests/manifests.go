// Package manifests renders the kustomize trees under manifests/ and applies
// them, so the integration suites and the local demo install exactly the
// objects a cluster admin would.
package manifests

import (
	"context"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// FieldOwner is the field manager name used when applying manifests.
const FieldOwner = "virtmesh-manifests"

// Render builds the kustomization in dir, as `kubectl kustomize dir` does.
func Render(dir string) ([]*unstructured.Unstructured, error) {
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("rendering %s: %w", dir, err)
	}
	objs := make([]*unstructured.Unstructured, 0, resMap.Size())
	for _, res := range resMap.Resources() {
		// Through JSON, so numbers become int64 as the apimachinery expects.
		raw, err := res.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("reading %s from %s: %w", res.CurId(), dir, err)
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("reading %s from %s: %w", res.CurId(), dir, err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// Apply server-side applies objs in order, failing on the first error. Extra
// options (client.DryRunAll) are passed on.
func Apply(ctx context.Context, c client.Client, objs []*unstructured.Unstructured, opts ...client.ApplyOption) error {
	opts = append([]client.ApplyOption{client.FieldOwner(FieldOwner), client.ForceOwnership}, opts...)
	for _, obj := range objs {
		obj = obj.DeepCopy()
		obj.SetManagedFields(nil)
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), opts...); err != nil {
			return fmt.Errorf("applying %s %s: %w", obj.GetKind(), client.ObjectKeyFromObject(obj), err)
		}
	}
	return nil
}

// MutatingWebhookConfigurations returns the typed MutatingWebhookConfigurations in objs.
func MutatingWebhookConfigurations(objs []*unstructured.Unstructured) ([]*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	var out []*admissionregistrationv1.MutatingWebhookConfiguration
	for _, obj := range objs {
		if obj.GroupVersionKind() != admissionregistrationv1.SchemeGroupVersion.WithKind("MutatingWebhookConfiguration") {
			continue
		}
		mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, mwc); err != nil {
			return nil, fmt.Errorf("decoding MutatingWebhookConfiguration %s: %w", obj.GetName(), err)
		}
		out = append(out, mwc)
	}
	return out, nil
}
