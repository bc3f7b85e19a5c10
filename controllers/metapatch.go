package controllers

import (
	"encoding/json"
	"errors"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// metadataPatch is a JSON merge patch of exactly the labels and annotations
// that differ between orig and the patched object, key by key, over orig's
// resourceVersion (a conflict if the object changed since).
//
// client.MergeFrom diffs whole objects: from a trimmed cached VMI (a few
// annotations, not every label) whose last kept annotation or label is
// removed, it sends "annotations": null or "labels": null, and the API
// server removes every one of them, KubeVirt's too (and KubeVirt refuses a
// change of its reserved labels, so the patch would fail for ever). Only
// labels and annotations may differ: anything else is an error, not a patch
// built from a trimmed copy.
func metadataPatch(orig client.Object) client.Patch { return metaPatch{orig: orig} }

type metaPatch struct{ orig client.Object }

func (metaPatch) Type() types.PatchType { return types.MergePatchType }

func (p metaPatch) Data(obj client.Object) ([]byte, error) {
	rest := obj.DeepCopyObject().(client.Object)
	rest.SetLabels(p.orig.GetLabels())
	rest.SetAnnotations(p.orig.GetAnnotations())
	if !equality.Semantic.DeepEqual(rest, p.orig) {
		return nil, errors.New("a metadata patch may change only labels and annotations")
	}
	meta := map[string]any{"resourceVersion": p.orig.GetResourceVersion()}
	if d := mapDiff(p.orig.GetLabels(), obj.GetLabels()); len(d) > 0 {
		meta["labels"] = d
	}
	if d := mapDiff(p.orig.GetAnnotations(), obj.GetAnnotations()); len(d) > 0 {
		meta["annotations"] = d
	}
	return json.Marshal(map[string]any{"metadata": meta})
}

// mapDiff is the merge patch from a to b: changed and added keys with their
// value, removed keys with null.
func mapDiff(a, b map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range b {
		if old, ok := a[k]; !ok || old != v {
			out[k] = v
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			out[k] = nil
		}
	}
	return out
}
