package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/onboard"
)

// Removing the last label or annotation a trimmed cached VMI holds removes
// that key only, never the whole map on the server.
func TestMetadataPatchRemovesKeysNotMaps(t *testing.T) {
	cached := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "vms", ResourceVersion: "7"}}
	onboard.Pin(cached, time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC))
	vmi := cached.DeepCopy()
	onboard.Unpin(vmi)
	got, err := metadataPatch(cached).Data(vmi)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"metadata":{"annotations":{"` + mesh.PinnedAnnotation + `":null},"labels":{"` + mesh.InjectKey + `":null},"resourceVersion":"7"}}`
	if string(got) != want {
		t.Fatalf("patch\n%s\nwant\n%s", got, want)
	}

	// Added and changed keys, nothing else.
	vmi = cached.DeepCopy()
	vmi.Labels["app"], vmi.Annotations[mesh.PinnedAnnotation] = "db", "later"
	if got, _ = metadataPatch(cached).Data(vmi); string(got) != `{"metadata":{"annotations":{"`+mesh.PinnedAnnotation+`":"later"},"labels":{"app":"db"},"resourceVersion":"7"}}` {
		t.Fatalf("patch %s", got)
	}

	// Anything but labels and annotations is refused: a trimmed copy's
	// spec would overwrite the VMI's.
	vmi = cached.DeepCopy()
	vmi.Spec.Hostname = "x"
	if _, err := metadataPatch(cached).Data(vmi); err == nil {
		t.Fatal("a spec change was patched")
	}
}
