package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
)

// benchVMIs are a bare VMI, seed 004's istio-vmi as its owner wrote it, and
// a large one (testkit.LargeVMI).
func benchVMIs() map[string]*kubevirtv1.VirtualMachineInstance {
	return map[string]*kubevirtv1.VirtualMachineInstance{
		"small":   testkit.SmallVMI("vms", "small"),
		"typical": testkit.SeedVMI("vms"),
		"large":   testkit.LargeVMI("vms", "large"),
	}
}

// hugeVMI is a bare VMI padded with labels to about 3 MB encoded, the
// largest object the API server sends (a dry-run create reaches the webhook
// before the API server checks labels).
func hugeVMI() *kubevirtv1.VirtualMachineInstance {
	vmi := testkit.SmallVMI("vms", "huge")
	vmi.Labels = map[string]string{}
	for i := range 190_000 {
		vmi.Labels[fmt.Sprintf("k%07d", i)] = "v"
	}
	return vmi
}

// BenchmarkHugeReviews sends 16 reviews of a 3 MB VMI at once through the
// webhook as Register serves it, each iteration, and reports the peak heap
// in use (peak-MB; 1,170 MB before the webhook bounded what it handles at
// once and stopped diffing whole objects).
func BenchmarkHugeReviews(b *testing.B) {
	raw, err := json.Marshal(hugeVMI())
	if err != nil {
		b.Fatal(err)
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "huge", Operation: admissionv1.Create, Namespace: "vms", Resource: vmiResource,
			Object: runtime.RawExtension{Raw: raw}}})
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	h := limitRequests(&admission.Webhook{Handler: &Handler{Mesh: mesh.DefaultConfig(), Config: cfg, NamespaceLabels: meshedNamespace}},
		cfg.MaxRequestBytes, cfg.MaxInFlightBytes)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m goruntime.MemStats
		for {
			goruntime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	goruntime.GC()
	for b.Loop() {
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest("POST", "/", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				h.ServeHTTP(rec, req)
				if rec.Code != 200 || !bytes.Contains(rec.Body.Bytes(), []byte(`"patch"`)) {
					b.Errorf("status %d: %.200s", rec.Code, rec.Body)
				}
			})
		}
		wg.Wait()
	}
	close(stop)
	<-sampled
	b.ReportMetric(float64(peak.Load())/1e6, "peak-MB")
}

// BenchmarkMutateVMI measures the mutation alone (goal: typical <= 30us/op).
func BenchmarkMutateVMI(b *testing.B) {
	ns := Namespace{Name: "vms", Labels: map[string]string{"istio-injection": "enabled"}}
	cfg := DefaultConfig()
	for name, vmi := range benchVMIs() {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				MutateVMI(vmi.DeepCopy(), Env{Namespace: ns}, mesh.DefaultConfig(), cfg)
			}
		})
	}
}

// BenchmarkHandle measures one admission as the handler sees it: decoding the
// VMI, the mutation, and the patch of what changed.
func BenchmarkHandle(b *testing.B) {
	h := &Handler{Mesh: mesh.DefaultConfig(), Config: DefaultConfig(), NamespaceLabels: meshedNamespace}
	vmis := benchVMIs()
	vmis["huge"] = hugeVMI()
	for name, vmi := range vmis {
		raw, err := json.Marshal(vmi)
		if err != nil {
			b.Fatal(err)
		}
		req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			Operation: admissionv1.Create, Namespace: "vms", Resource: vmiResource, Object: runtime.RawExtension{Raw: raw}}}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if resp := h.Handle(context.Background(), req); !resp.Allowed || len(resp.Patches) == 0 {
					b.Fatalf("not mutated: %+v", resp.Result)
				}
			}
		})
	}
}
