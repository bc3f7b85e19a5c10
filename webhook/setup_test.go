package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// countingReader is an API server holding the given namespaces, counting Gets.
func countingReader(gets *int, namespaces ...*corev1.Namespace) client.Reader {
	b := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme)
	for _, ns := range namespaces {
		b = b.WithObjects(ns)
	}
	return b.WithInterceptorFuncs(interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		*gets++
		return c.Get(ctx, key, obj, opts...)
	}}).Build()
}

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func TestNamespaceLabelsConfirmsAStaleCacheLive(t *testing.T) {
	enabled := map[string]string{mesh.NamespaceInjectionLabel: "enabled"}
	var cachedGets, liveGets int
	cached := countingReader(&cachedGets, namespace("vms", nil), namespace("meshed", enabled), namespace("kube-system", nil))
	live := countingReader(&liveGets, namespace("vms", enabled), namespace("meshed", enabled), namespace("kube-system", enabled),
		namespace("new", enabled))
	read := namespaceLabelsFrom(cached, live, mesh.DefaultConfig())
	for _, tc := range []struct {
		ns         string
		wantLive   int
		wantInMesh bool
	}{
		{"meshed", 0, true},       // the cache says in the mesh: trusted
		{"vms", 1, true},          // the cache says out, the API server was called for a reason: read again
		{"new", 1, true},          // not in the cache yet
		{"kube-system", 0, false}, // excluded: never meshed, no need to ask
	} {
		liveGets = 0
		labels, err := read(context.Background(), tc.ns)
		if err != nil {
			t.Fatal(err)
		}
		if liveGets != tc.wantLive || (labels[mesh.NamespaceInjectionLabel] == "enabled") != tc.wantInMesh {
			t.Errorf("%s: %d live reads, labels %v", tc.ns, liveGets, labels)
		}
	}
}

func TestAnswersCloseTheirConnectionWhileDraining(t *testing.T) {
	var draining atomic.Bool
	srv := httptest.NewServer(closeWhileDraining(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}), draining.Load))
	defer srv.Close()
	get := func() *http.Response {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp
	}
	if get().Close {
		t.Fatal("connection closed while serving normally")
	}
	draining.Store(true)
	if resp := get(); !resp.Close { // the client reads "Connection: close" into Close
		t.Fatal("connection kept open while draining")
	}
}
