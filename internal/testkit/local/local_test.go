package local

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/virtmesh/virtmesh/internal/controlplane"
	"github.com/virtmesh/virtmesh/internal/manifests"
)

var repoRoot = filepath.Join("..", "..", "..")

func TestIdentityMatchesShippedRBAC(t *testing.T) {
	objs, err := manifests.Render(filepath.Join(repoRoot, "manifests", "rbac"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == "ServiceAccount" && o.GetNamespace() == Namespace && o.GetName() == ServiceAccount {
			return
		}
	}
	t.Errorf("manifests/rbac has no ServiceAccount %s/%s", Namespace, ServiceAccount)
}

func TestStartControlPlaneNeedsTheWebhookManifests(t *testing.T) {
	cp, err := StartControlPlane(t.TempDir(), controlplane.Options{})
	if err == nil || cp != nil {
		t.Fatalf("got %v, %v; want no control plane and an error", cp, err)
	}
}

// unreachable is an API server nobody answers for.
var unreachable = &rest.Config{Host: "https://127.0.0.1:1"}

func TestWaitForWebhookStopsWhenVirtmeshExits(t *testing.T) {
	exitErr := errors.New("exit status 2")
	start := time.Now()
	err := WaitForWebhook(context.Background(), unreachable, func() (bool, error) { return true, exitErr }, time.Minute)
	if !errors.Is(err, exitErr) || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("got %v, want virtmesh's exit", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %s to notice the exit", time.Since(start))
	}
}

func TestWaitForWebhookGivesUp(t *testing.T) {
	running := func() (bool, error) { return false, nil }
	err := WaitForWebhook(context.Background(), unreachable, running, 500*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "did not answer within 500ms") {
		t.Fatalf("got %v, want a timeout", err)
	}
}

// The webhook configuration StartControlPlane installs calls virtmesh in
// Namespace: a rename here must be a rename there.
func TestWebhookCallsVirtmeshsNamespace(t *testing.T) {
	objs, err := manifests.Render(filepath.Join(repoRoot, "manifests", "webhook"))
	if err != nil {
		t.Fatal(err)
	}
	webhooks, err := manifests.MutatingWebhookConfigurations(objs)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range webhooks {
		for _, w := range c.Webhooks {
			if w.ClientConfig.Service == nil || w.ClientConfig.Service.Namespace != Namespace {
				t.Errorf("webhook %s does not call a Service in %s", w.Name, Namespace)
			}
		}
	}
}
