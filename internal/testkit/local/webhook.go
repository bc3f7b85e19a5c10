package local

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// WaitForWebhook waits until virtmesh's webhook answers the API server at
// cfg: a dry-run create of a VMI opted into the mesh is admitted (it is
// refused while the webhook does not answer). It gives up when exited reports
// that the manager ended, when ctx ends, or after timeout.
func WaitForWebhook(ctx context.Context, cfg *rest.Config, exited func() (bool, error), timeout time.Duration) error {
	scheme := runtime.NewScheme()
	if err := kubevirtv1.AddToScheme(scheme); err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	probe := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "webhook-probe", Namespace: metav1.NamespaceDefault,
		Labels: map[string]string{mesh.InjectKey: "true"}}}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		if done, err := exited(); done {
			if err == nil {
				err = errors.New("exit status 0")
			}
			return fmt.Errorf("virtmesh exited before its webhook answered: %w", err)
		}
		err := c.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("virtmesh's webhook did not answer within %s: %w", timeout, err)
		case <-tick.C:
		}
	}
}
