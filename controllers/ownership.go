package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// Ownership is judged by server-side apply field ownership, not by the
// managed-by label alone: anyone who can write a Service can copy a label,
// and a kubectl apply of an exported object keeps it, but the label is
// virtmesh's only if virtmesh's own managedFields entry owns it.

// Virtmeshs reports whether virtmesh created obj and still owns it: it carries
// the managed-by label and virtmesh's field manager owns that label.
func Virtmeshs(obj client.Object) bool {
	if !Managed(obj) {
		return false
	}
	for _, e := range obj.GetManagedFields() {
		if e.Manager == FieldOwner && e.Subresource == "" && owns(e, "f:metadata", "f:labels", "f:"+mesh.ManagedByLabel) {
			return true
		}
	}
	return false
}

// wroteFields reports whether virtmesh's field manager owns any field of obj:
// virtmesh created it, whatever has become of its label since.
func wroteFields(obj client.Object) bool {
	for _, e := range obj.GetManagedFields() {
		if e.Manager == FieldOwner && e.Subresource == "" {
			return true
		}
	}
	return false
}

// takenOverBy names the field manager, other than virtmesh, that has changed
// what virtmesh's Service is for (its selector, its ports, or the managed-by
// label), or "".
func takenOverBy(obj client.Object) string {
	for _, e := range obj.GetManagedFields() {
		if e.Manager != FieldOwner && takesOver(e) {
			return e.Manager
		}
	}
	return ""
}

// takesOver reports whether a managedFields entry holds what a Service of
// virtmesh's is for: its selector, its ports or the managed-by label.
func takesOver(e metav1.ManagedFieldsEntry) bool {
	if e.Subresource != "" {
		return false
	}
	fields, ok := parseFields(e)
	return ok && (has(fields, "f:spec", "f:selector") || has(fields, "f:spec", "f:ports") || has(fields, "f:metadata", "f:labels", "f:"+mesh.ManagedByLabel))
}

// owns reports whether a managedFields entry holds the field at path (or
// anything below it).
func owns(e metav1.ManagedFieldsEntry, path ...string) bool {
	if e.FieldsV1 == nil {
		return false
	}
	if found, ok := scanFields(e.FieldsV1.Raw, path); ok {
		return found
	}
	fields, ok := parseFields(e)
	return ok && has(fields, path...)
}

// scanFields answers owns without decoding: a field set (FieldsV1) is JSON
// objects all the way down, keyed by strings, so the path can be followed
// over the bytes. Every reconcile of a Service asks (Virtmeshs); decoding
// the set into maps each time was a twentieth of all the manager allocated
// at 20,000 VMIs. ok is false when the bytes hold anything else: then the
// caller decodes.
func scanFields(raw []byte, path []string) (found, ok bool) {
	i := skipSpace(raw, 0)
	found, next, ok := scanObject(raw, i, path)
	if !ok || skipSpace(raw, next) != len(raw) {
		return false, false // trailing bytes: the decoder refuses them
	}
	return found, true
}

// scanObject reads the object at raw[i]; found says path (empty: this
// object itself) is in it; next is where the object ends.
func scanObject(raw []byte, i int, path []string) (found bool, next int, ok bool) {
	if i >= len(raw) || raw[i] != '{' {
		return false, i, false
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return len(path) == 0, i + 1, true
	}
	matched := false
	for {
		if i >= len(raw) || raw[i] != '"' {
			return false, i, false
		}
		end, escaped := i+1, false
		for end < len(raw) && raw[end] != '"' {
			if raw[end] == '\\' { // k:{\"port\":8080,...}: list keys hold quotes
				escaped = true
				end++
			}
			end++
		}
		if end >= len(raw) {
			return false, end, false
		}
		quoted := raw[i : end+1]
		i = skipSpace(raw, end+1)
		if i >= len(raw) || raw[i] != ':' {
			return false, i, false
		}
		i = skipSpace(raw, i+1)
		var sub bool
		var rest []string
		match := false
		if len(path) > 0 {
			if !escaped {
				match = string(quoted[1:len(quoted)-1]) == path[0]
			} else {
				var key string // rare on a path: decode it
				if json.Unmarshal(quoted, &key) != nil {
					return false, i, false
				}
				match = key == path[0]
			}
		}
		if match {
			rest = path[1:]
		}
		sub, i, ok = scanObject(raw, i, rest)
		if !ok {
			return false, i, false
		}
		if match {
			if matched {
				return false, i, false // a duplicate key: the decoder keeps the last one
			}
			matched, found = true, sub
		}
		i = skipSpace(raw, i)
		switch {
		case i < len(raw) && raw[i] == ',':
			i = skipSpace(raw, i+1)
		case i < len(raw) && raw[i] == '}':
			return found || len(path) == 0, i + 1, true
		default:
			return false, i, false
		}
	}
}

func skipSpace(raw []byte, i int) int {
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\n' || raw[i] == '\t' || raw[i] == '\r') {
		i++
	}
	return i
}

// parseFields decodes an entry's field set (once, for several has).
func parseFields(e metav1.ManagedFieldsEntry) (map[string]any, bool) {
	if e.FieldsV1 == nil {
		return nil, false
	}
	var fields map[string]any
	if err := json.Unmarshal(e.FieldsV1.Raw, &fields); err != nil {
		return nil, false
	}
	return fields, true
}

// has reports whether a decoded field set holds the field at path (or
// anything below it).
func has(node map[string]any, path ...string) bool {
	for _, p := range path {
		next, ok := node[p].(map[string]any)
		if !ok {
			return false
		}
		node = next
	}
	return true
}

// release lets go of a Service someone else has taken over, without
// changing what it selects or serves: virtmesh's label, its owner references
// (so the garbage collector never deletes the Service with the VMs) and its
// field ownership go, in one JSON patch guarded by live's resourceVersion.
// live must come from the API server, with every manager's entries.
func release(ctx context.Context, c client.Client, live client.Object) error {
	var owners []metav1.OwnerReference
	for _, o := range live.GetOwnerReferences() {
		if !isMemberKind(o) {
			owners = append(owners, o)
		}
	}
	var fields []metav1.ManagedFieldsEntry
	for _, e := range live.GetManagedFields() {
		if e.Manager != FieldOwner {
			fields = append(fields, e)
		}
	}
	ops := []map[string]any{
		{"op": "replace", "path": "/metadata/resourceVersion", "value": live.GetResourceVersion()},
		{"op": "replace", "path": "/metadata/ownerReferences", "value": owners},
		{"op": "replace", "path": "/metadata/managedFields", "value": fields},
	}
	if Managed(live) { // the label may be theirs now (managed-by=Helm, say): only virtmesh's value goes
		ops = append(ops, map[string]any{"op": "remove", "path": "/metadata/labels/" + strings.ReplaceAll(mesh.ManagedByLabel, "/", "~1")})
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	if err := c.Patch(ctx, live, client.RawPatch(types.JSONPatchType, patch)); err != nil {
		return fmt.Errorf("releasing %s/%s: %w", live.GetNamespace(), live.GetName(), err)
	}
	return nil
}
