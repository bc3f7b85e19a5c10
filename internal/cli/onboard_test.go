package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/onboard"
	"github.com/virtmesh/virtmesh/internal/status"
)

// onboardCluster is the status fixture with "db" live-migratable, "lb" a
// VM bound as bridge and "solo" a standalone VMI that cannot migrate, both
// running without a proxy in the mesh namespace.
func onboardCluster(t *testing.T) client.Client {
	t.Helper()
	return onboardClusterWith(t, interceptor.Funcs{})
}

func onboardClusterWith(t *testing.T, funcs interceptor.Funcs) client.Client {
	t.Helper()
	objs := cluster(t)
	objs = append(objs, vmObjects(vmShape{name: "lb", ns: "vms", pod: podNoProxy})...)
	objs = append(objs, vmObjects(vmShape{name: "solo", ns: "vms", vmless: true, pod: podNoProxy})...)
	for _, o := range objs {
		vmi, ok := o.(*kubevirtv1.VirtualMachineInstance)
		if !ok {
			continue
		}
		switch vmi.Name {
		case "db":
			vmi.Status.Conditions = []kubevirtv1.VirtualMachineInstanceCondition{
				{Type: kubevirtv1.VirtualMachineInstanceIsMigratable, Status: corev1.ConditionTrue}}
		case "lb":
			vmi.Spec.Domain.Devices.Interfaces[0].InterfaceBindingMethod = kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}
		}
	}
	return newFake(objs, funcs)
}

var regexpMigration = regexp.MustCompile(`virtmesh-onboard-db-[0-9a-f]{8}-1-[0-9a-z]+`)

func runWithRestart(t *testing.T, c client.Client, restarted *[]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), args, Env{Stdout: &out, Stderr: &errOut, RESTConfig: &rest.Config{Host: "https://example.invalid"},
		Namespace: "vms", NewClient: func(*rest.Config) (client.Client, error) { return c, nil },
		Restart: func(_ context.Context, ns, name string) error {
			*restarted = append(*restarted, ns+"/"+name)
			return nil
		}})
	return out.String(), errOut.String(), code
}

func migrations(t *testing.T, c client.Client) []kubevirtv1.VirtualMachineInstanceMigration {
	t.Helper()
	list := &kubevirtv1.VirtualMachineInstanceMigrationList{}
	if err := c.List(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func TestOnboardDryRunChangesNothing(t *testing.T) {
	c := onboardCluster(t)
	var restarted []string
	out, errOut, code := runWithRestart(t, c, &restarted, "onboard", "-n", "vms", "--dry-run", "--restart")
	if code != ExitTrouble || errOut != "" {
		t.Fatalf("exit %d, stderr %q (the standalone VMI cannot be onboarded)", code, errOut)
	}
	// The migration's name holds the time: compare without it.
	golden(t, "onboard-dry-run.txt", regexpMigration.ReplaceAllString(out, "virtmesh-onboard-db-<hash>-1-<time>"))
	if len(restarted) != 0 || len(migrations(t, c)) != 0 {
		t.Fatalf("a dry run restarted %v or created %v", restarted, migrations(t, c))
	}
	vmi := &kubevirtv1.VirtualMachineInstance{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "vms", Name: "db"}, vmi); err != nil {
		t.Fatal(err)
	}
	if _, ok := vmi.Annotations[mesh.OnboardingAnnotation]; ok {
		t.Fatal("a dry run changed the VMI")
	}
}

func TestOnboard(t *testing.T) {
	c := onboardCluster(t)
	var restarted []string
	out, errOut, code := runWithRestart(t, c, &restarted, "onboard", "db", "web")
	if code != ExitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q, stdout %q", code, errOut, out)
	}
	if !strings.Contains(out, "VM vms/web: Meshed, nothing to onboard") || !strings.Contains(out, "VM vms/db: onboarding by live migration virtmesh-onboard-db-") {
		t.Fatalf("output:\n%s", out)
	}
	vmi := &kubevirtv1.VirtualMachineInstance{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "vms", Name: "db"}, vmi); err != nil {
		t.Fatal(err)
	}
	o, err := mesh.ParseOnboarding(vmi.Annotations[mesh.OnboardingAnnotation])
	if err != nil || o.By != mesh.OnboardedByCLI || !mesh.KubeVirtIstioOn(vmi) || vmi.Labels[mesh.InjectKey] != "true" {
		t.Fatalf("VMI after onboard: %v %v (%v)", vmi.Labels, vmi.Annotations, err)
	}
	ms := migrations(t, c)
	if len(ms) != 1 || ms[0].Name != o.Migration || !onboard.Ours(vmi, ms[0].Name) || ms[0].Spec.VMIName != "db" {
		t.Fatalf("migrations: %+v", ms)
	}

	out, _, code = runWithRestart(t, c, &restarted, "onboard", "lb")
	if code != ExitTrouble || !strings.Contains(out, "bound as bridge") || !strings.Contains(out, "--restart") || len(restarted) != 0 {
		t.Fatalf("bridge without --restart: exit %d, %q, restarted %v", code, out, restarted)
	}
	out, _, code = runWithRestart(t, c, &restarted, "onboard", "lb", "--restart")
	if code != ExitOK || len(restarted) != 1 || restarted[0] != "vms/lb" || !strings.Contains(out, "VM vms/lb: restarted") {
		t.Fatalf("bridge with --restart: exit %d, %q, restarted %v", code, out, restarted)
	}
	out, _, code = runWithRestart(t, c, &restarted, "onboard", "solo", "--restart")
	if code != ExitTrouble || !strings.Contains(out, "standalone VMI") || len(restarted) != 1 {
		t.Fatalf("standalone: exit %d, %q, restarted %v", code, out, restarted)
	}
}

// refuseMigrations makes the API server refuse every migration create, a
// dry run too when dryRunToo, as KubeVirt's admission does while another
// migration of the VMI runs.
func refuseMigrations(dryRunToo bool) interceptor.Funcs {
	return interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.CreateOption) error {
		co := &client.CreateOptions{}
		co.ApplyOptions(opts)
		if _, ok := o.(*kubevirtv1.VirtualMachineInstanceMigration); ok && (dryRunToo || len(co.DryRun) == 0) {
			return apierrors.NewBadRequest("admission webhook \"migration-create-validator.kubevirt.io\" denied the request: " +
				"in-flight migration detected")
		}
		return c.Create(ctx, o, opts...)
	}}
}

func TestOnboardRefusedByTheDryRunChangesNothing(t *testing.T) {
	c := onboardClusterWith(t, refuseMigrations(true))
	before := &kubevirtv1.VirtualMachineInstance{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "vms", Name: "db"}, before); err != nil {
		t.Fatal(err)
	}
	var restarted []string
	for _, args := range [][]string{{"onboard", "db", "--dry-run"}, {"onboard", "db"}} {
		out, errOut, code := runWithRestart(t, c, &restarted, args...)
		if code != ExitTrouble || !strings.Contains(errOut, "would be refused") || !strings.Contains(errOut, "in-flight migration") ||
			!strings.Contains(errOut, "unchanged") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	after := &kubevirtv1.VirtualMachineInstance{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "vms", Name: "db"}, after); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(before.Labels, after.Labels) || !maps.Equal(before.Annotations, after.Annotations) || len(migrations(t, c)) != 0 {
		t.Errorf("the VMI changed: labels %v → %v, annotations %v → %v, migrations %d", before.Labels, after.Labels,
			before.Annotations, after.Annotations, len(migrations(t, c)))
	}
}

func TestOnboardPutsTheVMIBackWhenTheMigrationIsRefused(t *testing.T) {
	c := onboardClusterWith(t, refuseMigrations(false))
	before := &kubevirtv1.VirtualMachineInstance{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "vms", Name: "db"}, before); err != nil {
		t.Fatal(err)
	}
	var restarted []string
	out, errOut, code := runWithRestart(t, c, &restarted, "onboard", "db")
	if code != ExitTrouble || !strings.Contains(errOut, "back as it was") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	after := &kubevirtv1.VirtualMachineInstance{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "vms", Name: "db"}, after); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(before.Labels, after.Labels) || !maps.Equal(before.Annotations, after.Annotations) {
		t.Errorf("not put back: labels %v → %v, annotations %v → %v", before.Labels, after.Labels, before.Annotations, after.Annotations)
	}
}

// Without an Istio injector that would give the new pod a proxy, onboarding
// would turn KubeVirt's Istio networking on in a pod without one: refused,
// the VMI unchanged.
func TestOnboardRefusesWithoutAnInjector(t *testing.T) {
	c := onboardCluster(t)
	mwcs := &admissionregistrationv1.MutatingWebhookConfigurationList{}
	if err := c.List(context.Background(), mwcs); err != nil {
		t.Fatal(err)
	}
	for i := range mwcs.Items {
		if mwcs.Items[i].Name != status.WebhookConfigurationName {
			if err := c.Delete(context.Background(), &mwcs.Items[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	var restarted []string
	out, errOut, code := runWithRestart(t, c, &restarted, "onboard", "db")
	if code != ExitTrouble || !strings.Contains(errOut, "no Istio injector would give its new pod a proxy") || !strings.Contains(errOut, "unchanged") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	vmi := &kubevirtv1.VirtualMachineInstance{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "vms", Name: "db"}, vmi); err != nil {
		t.Fatal(err)
	}
	if _, ok := vmi.Annotations[mesh.InjectKey]; ok || len(migrations(t, c)) != 0 {
		t.Fatalf("the VMI changed (%v) or a migration was created", vmi.Annotations)
	}
}

// onboard's exit code: 3 when a refusal left the VM out, 1 when something
// failed.
func TestOnboardExit(t *testing.T) {
	gr := schema.GroupResource{Group: "kubevirt.io", Resource: "virtualmachineinstancemigrations"}
	for _, tc := range []struct {
		err  error
		want int
	}{
		{leftOut{errors.New("no Istio injector would give its new pod a proxy")}, ExitTrouble},
		{fmt.Errorf("the live migration would be refused: %w", explain(apierrors.NewForbidden(gr, "m", nil))), ExitTrouble},
		{fmt.Errorf("the live migration would be refused: %w", apierrors.NewBadRequest("in-flight migration")), ExitTrouble},
		{fmt.Errorf("updating VMI db: %w", apierrors.NewConflict(gr, "db", nil)), ExitError},
		{fmt.Errorf("the live migration would be refused: %w", errors.New("dial tcp: connection refused")), ExitError},
		{readFailed{fmt.Errorf("reading namespace: %w", apierrors.NewForbidden(gr, "ns", nil))}, ExitError},
		{readFailed{errors.New("putting VMI db back also failed")}, ExitError},
	} {
		if got := onboardExit(tc.err); got != tc.want {
			t.Errorf("%v: exit %d, want %d", tc.err, got, tc.want)
		}
	}
}
