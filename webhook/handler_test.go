package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/virtmesh/virtmesh/internal/injector"
	"github.com/virtmesh/virtmesh/internal/mesh"
)

var vmiResource = metav1.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachineinstances"}

func meshedNamespace(context.Context, string) (map[string]string, error) {
	return map[string]string{"istio-injection": "enabled"}, nil
}

func TestHandleRequests(t *testing.T) {
	bare := []byte(`{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachineInstance","metadata":{"name":"a","namespace":"vms"},"spec":{"domain":{"devices":{}}}}`)
	cases := []struct {
		name       string
		req        admissionv1.AdmissionRequest
		nsErr      error
		wantCode   int32
		wantPatch  bool
		wantReason string
	}{
		{name: "create is mutated", req: admissionv1.AdmissionRequest{Operation: admissionv1.Create, Resource: vmiResource, Object: runtime.RawExtension{Raw: bare}}, wantCode: http.StatusOK, wantPatch: true},
		{name: "update passes untouched", req: admissionv1.AdmissionRequest{Operation: admissionv1.Update, Resource: vmiResource, Object: runtime.RawExtension{Raw: bare}}, wantCode: http.StatusOK},
		{name: "delete passes untouched", req: admissionv1.AdmissionRequest{Operation: admissionv1.Delete, Resource: vmiResource}, wantCode: http.StatusOK},
		{name: "connect passes untouched", req: admissionv1.AdmissionRequest{Operation: admissionv1.Connect, Resource: vmiResource}, wantCode: http.StatusOK},
		{name: "wrong resource", req: admissionv1.AdmissionRequest{Operation: admissionv1.Create, Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Object: runtime.RawExtension{Raw: bare}}, wantCode: http.StatusBadRequest, wantReason: "virtualmachineinstances only"},
		{name: "missing object", req: admissionv1.AdmissionRequest{Operation: admissionv1.Create, Resource: vmiResource}, wantCode: http.StatusBadRequest, wantReason: "has no object"},
		{name: "object is not a VMI", req: admissionv1.AdmissionRequest{Operation: admissionv1.Create, Resource: vmiResource, Object: runtime.RawExtension{Raw: []byte(`{"spec":"nope"}`)}}, wantCode: http.StatusBadRequest, wantReason: "decoding VirtualMachineInstance"},
		{name: "namespace unreadable", req: admissionv1.AdmissionRequest{Operation: admissionv1.Create, Resource: vmiResource, Object: runtime.RawExtension{Raw: bare}}, nsErr: errors.New("boom"), wantCode: http.StatusInternalServerError, wantReason: "boom"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{Mesh: mesh.DefaultConfig(), Config: DefaultConfig(), NamespaceLabels: func(ctx context.Context, n string) (map[string]string, error) {
				if tc.nsErr != nil {
					return nil, tc.nsErr
				}
				return meshedNamespace(ctx, n)
			}}
			resp := h.Handle(context.Background(), admission.Request{AdmissionRequest: tc.req})
			if resp.Result == nil || resp.Result.Code != tc.wantCode {
				t.Fatalf("code: want %d, got %+v", tc.wantCode, resp.Result)
			}
			if got := len(resp.Patches) > 0; got != tc.wantPatch {
				t.Fatalf("patch: want %v, got %v", tc.wantPatch, resp.Patches)
			}
			if !strings.Contains(resp.Result.Message, tc.wantReason) {
				t.Fatalf("message %q does not say %q", resp.Result.Message, tc.wantReason)
			}
		})
	}
}

// TestServeHTTPBadBodies sends what no API server would and checks that each
// gets a clear error and that the server goes on serving.
func TestServeHTTPBadBodies(t *testing.T) {
	srv := httptest.NewServer(&admission.Webhook{Handler: &Handler{Mesh: mesh.DefaultConfig(), Config: DefaultConfig(), NamespaceLabels: meshedNamespace}})
	defer srv.Close()
	good := reviewBody(t, []byte(`{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachineInstance","metadata":{"name":"a","namespace":"vms"}}`))
	bodies := map[string][]byte{
		"not JSON":               []byte("{{{"),
		"not an AdmissionReview": []byte(`{"kind":"Pod","apiVersion":"v1"}`),
		"too large":              bytes.Repeat([]byte("x"), 8<<20),
		"empty":                  nil,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			resp := post(t, srv.URL, body)
			if resp.Response == nil || resp.Response.Allowed || resp.Response.Result == nil || resp.Response.Result.Message == "" {
				t.Fatalf("want a clear error, got %+v", resp.Response)
			}
			if ok := post(t, srv.URL, good); ok.Response == nil || !ok.Response.Allowed || len(ok.Response.Patch) == 0 {
				t.Fatalf("server stopped serving good requests after %s: %+v", name, ok.Response)
			}
		})
	}
}

func reviewBody(t testing.TB, obj []byte) []byte {
	t.Helper()
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "u1", Operation: admissionv1.Create, Namespace: "vms",
			Resource: vmiResource, Object: runtime.RawExtension{Raw: obj}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t testing.TB, url string, body []byte) admissionv1.AdmissionReview {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&review); err != nil {
		t.Fatalf("response is not an AdmissionReview: %v", err)
	}
	return review
}

func TestHandleReadsTheVMOnlyWhenNeeded(t *testing.T) {
	reads := 0
	failing := func(context.Context, string, string) (*kubevirtv1.VirtualMachine, error) {
		reads++
		return nil, errors.New("the API server is slow")
	}
	h := &Handler{Mesh: mesh.DefaultConfig(), Config: DefaultConfig(), NamespaceLabels: meshedNamespace, VirtualMachines: failing}
	owned := func(labels map[string]string) admission.Request {
		vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "vms", Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: "web", UID: "u", Controller: ptr.To(true)}}}}
		raw, err := json.Marshal(vmi)
		if err != nil {
			t.Fatal(err)
		}
		return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{Operation: admissionv1.Create, Namespace: "vms",
			Resource: vmiResource, Object: runtime.RawExtension{Raw: raw}}}
	}
	resp := h.Handle(context.Background(), owned(map[string]string{mesh.AppLabel: "web"}))
	if !resp.Allowed || reads != 0 {
		t.Fatalf("an app label set: allowed=%v, %d VM reads", resp.Allowed, reads)
	}
	resp = h.Handle(context.Background(), owned(nil))
	if resp.Allowed || reads != 1 || resp.Result.Code != http.StatusInternalServerError || !strings.Contains(resp.Result.Message, "the API server is slow") {
		t.Fatalf("no app label, VM unreadable: want an error virt-controller retries, got allowed=%v reads=%d %+v", resp.Allowed, reads, resp.Result)
	}
	resp = h.Handle(context.Background(), owned(map[string]string{mesh.InjectKey: "false"}))
	if !resp.Allowed || reads != 1 {
		t.Fatalf("opted out: allowed=%v, %d VM reads", resp.Allowed, reads)
	}
}

func TestHandleWarnsAboutIstiosNetworksBug(t *testing.T) {
	asked := 0
	buggy := func(context.Context, map[string]string, map[string]string) (injector.Decision, bool) {
		asked++
		return injector.Decision{Kind: injector.Shared, Version: "1.22.8", NetworksBug: true}, true
	}
	h := &Handler{Mesh: mesh.DefaultConfig(), Config: DefaultConfig(), NamespaceLabels: meshedNamespace, Injectors: buggy}
	request := func(vmi *kubevirtv1.VirtualMachineInstance) admission.Request {
		raw, err := json.Marshal(vmi)
		if err != nil {
			t.Fatal(err)
		}
		return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{Operation: admissionv1.Create, Namespace: "vms",
			Resource: vmiResource, Object: runtime.RawExtension{Raw: raw}}}
	}
	plain := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: "vms"}}
	if resp := h.Handle(context.Background(), request(plain)); strings.Contains(strings.Join(resp.Warnings, "\n"), "1.22.8") || asked != 0 {
		t.Fatalf("a VMI without secondary networks was warned (asked %d): %v", asked, resp.Warnings)
	}
	multi := plain.DeepCopy()
	multi.Name = "multi"
	multi.Spec.Networks = []kubevirtv1.Network{*kubevirtv1.DefaultPodNetwork(),
		{Name: "storage", NetworkSource: kubevirtv1.NetworkSource{Multus: &kubevirtv1.MultusNetwork{NetworkName: "storage"}}}}
	multi.Spec.Domain.Devices.Interfaces = []kubevirtv1.Interface{{Name: "default"}, {Name: "storage",
		InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}}}
	resp := h.Handle(context.Background(), request(multi))
	if !resp.Allowed || !strings.Contains(strings.Join(resp.Warnings, "\n"), "Istio 1.22.8's injector") {
		t.Fatalf("no warning about Istio 1.22.8: allowed=%v %v", resp.Allowed, resp.Warnings)
	}
	// Written already meshed by its owner: nothing to patch, still warned.
	ready := multi.DeepCopy()
	ready.Name = "ready"
	out := MutateVMI(ready, Env{Namespace: Namespace{Name: "vms", Labels: map[string]string{mesh.NamespaceInjectionLabel: "enabled"}}},
		mesh.DefaultConfig(), DefaultConfig())
	if len(out.Changes) == 0 {
		t.Fatal("the fixture needed no mutation")
	}
	resp = h.Handle(context.Background(), request(ready))
	if !resp.Allowed || resp.Patches != nil || !strings.Contains(strings.Join(resp.Warnings, "\n"), "Istio 1.22.8's injector") {
		t.Fatalf("an already meshed VMI: want no patch and the warning, got %d patches, %v", len(resp.Patches), resp.Warnings)
	}
	// An injector whose injectedAnnotations replace the networks annotation.
	h.Injectors = func(context.Context, map[string]string, map[string]string) (injector.Decision, bool) {
		return injector.Decision{Kind: injector.PerNamespace, Name: "istio-cni", OverwritesNetworks: true}, true
	}
	resp = h.Handle(context.Background(), request(multi))
	if !strings.Contains(strings.Join(resp.Warnings, "\n"), "injectedAnnotations replaces") {
		t.Fatalf("no warning about injectedAnnotations: %v", resp.Warnings)
	}
}
