package webhook

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	"k8s.io/apimachinery/pkg/api/equality"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// before is what MutateVMI can change in a VMI, as decoded: its labels, its
// annotations, and its pod network (added when the VMI has no network and no
// interface at all; otherwise only the pod interface's binding changes). The
// patch is computed from it and the mutated VMI, never from the whole object,
// whose labels, annotations or spec may be megabytes long: the cost of a
// review is then the cost of decoding it, whatever its size.
type before struct {
	labels, annotations map[string]string
	bare                bool // no network and no interface
	podIface            int  // the pod interface's index; -1: none
	iface               kubevirtv1.Interface
}

func snapshot(vmi *kubevirtv1.VirtualMachineInstance) before {
	s := before{labels: maps.Clone(vmi.Labels), annotations: maps.Clone(vmi.Annotations), podIface: -1,
		bare: len(vmi.Spec.Networks) == 0 && len(vmi.Spec.Domain.Devices.Interfaces) == 0}
	pod := mesh.PodInterface(&vmi.Spec)
	for i := range vmi.Spec.Domain.Devices.Interfaces {
		if &vmi.Spec.Domain.Devices.Interfaces[i] == pod {
			s.podIface, s.iface = i, *pod.DeepCopy()
		}
	}
	return s
}

// patch is the JSON patch from the VMI as decoded (b) to vmi, as mutated.
// It equals the patch between the two whole objects encoded through the same
// Go types (TestPatchEqualsWholeObjectDiff): a field those types do not know
// appears in neither, so the patch never touches it in the object the API
// server holds.
func (b before) patch(vmi *kubevirtv1.VirtualMachineInstance) ([]jsonpatch.Operation, error) {
	ops := mapPatch(nil, "/metadata/labels", b.labels, vmi.Labels)
	ops = mapPatch(ops, "/metadata/annotations", b.annotations, vmi.Annotations)
	ifaces := vmi.Spec.Domain.Devices.Interfaces
	switch {
	case b.bare:
		if len(vmi.Spec.Networks) > 0 {
			ops = append(ops, jsonpatch.NewOperation("add", "/spec/networks", vmi.Spec.Networks))
		}
		if len(ifaces) > 0 {
			ops = append(ops, jsonpatch.NewOperation("add", "/spec/domain/devices/interfaces", ifaces))
		}
	case b.podIface >= 0 && b.podIface < len(ifaces) && !equality.Semantic.DeepEqual(b.iface, ifaces[b.podIface]):
		was, err := json.Marshal(b.iface)
		if err != nil {
			return nil, fmt.Errorf("encoding interface %q: %w", b.iface.Name, err)
		}
		is, err := json.Marshal(ifaces[b.podIface])
		if err != nil {
			return nil, fmt.Errorf("encoding mutated interface %q: %w", b.iface.Name, err)
		}
		sub, err := jsonpatch.CreatePatch(was, is)
		if err != nil {
			return nil, fmt.Errorf("computing the patch of interface %q: %w", b.iface.Name, err)
		}
		for _, op := range sub {
			op.Path = fmt.Sprintf("/spec/domain/devices/interfaces/%d%s", b.podIface, op.Path)
			ops = append(ops, op)
		}
	}
	return ops, nil
}

var pointerEscape = strings.NewReplacer("~", "~0", "/", "~1")

// mapPatch appends the operations that turn the string map at path from
// was into is, key by key (an empty map is encoded as none).
func mapPatch(ops []jsonpatch.Operation, path string, was, is map[string]string) []jsonpatch.Operation {
	switch {
	case len(was) == 0 && len(is) == 0:
		return ops
	case len(was) == 0:
		return append(ops, jsonpatch.NewOperation("add", path, is))
	case len(is) == 0:
		return append(ops, jsonpatch.NewOperation("remove", path, nil))
	}
	// Only the keys that changed are sorted (for a stable patch): a map of
	// a hundred thousand keys costs one pass over it.
	var added, replaced, removed []string
	for k, v := range is {
		if old, had := was[k]; !had {
			added = append(added, k)
		} else if old != v {
			replaced = append(replaced, k)
		}
	}
	for k := range was {
		if _, kept := is[k]; !kept {
			removed = append(removed, k)
		}
	}
	for _, change := range []struct {
		op   string
		keys []string
	}{{"add", added}, {"replace", replaced}, {"remove", removed}} {
		slices.Sort(change.keys)
		for _, k := range change.keys {
			var value any
			if change.op != "remove" {
				value = is[k]
			}
			ops = append(ops, jsonpatch.NewOperation(change.op, path+"/"+pointerEscape.Replace(k), value))
		}
	}
	return ops
}
