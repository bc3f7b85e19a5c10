package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/injector"
	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/onboard"
	"github.com/virtmesh/virtmesh/internal/status"
	vmwebhook "github.com/virtmesh/virtmesh/webhook"
)

// onboardable are the states onboard acts on: running outside the mesh in a
// mesh namespace (NeedsRestart, Pinned), with a proxy KubeVirt does not serve
// (Broken: a migration with the mesh metadata mends it too), and bound as
// bridge in a mesh namespace (NotMeshable: a restart lets the webhook bind
// the new VMI as masquerade).
var onboardable = []mesh.State{mesh.NeedsRestart, mesh.Pinned, mesh.Broken, mesh.NotMeshable}

// onboardOptions are the onboard command's flags.
type onboardOptions struct {
	dryRun, restart bool
}

// runOnboard brings the chosen VMs that were running before their namespace
// joined the mesh (NeedsRestart or Pinned) into it, with the user's own
// rights: by a live migration when they can (the same change and migration
// virtmesh's onboard policy makes), by a restart with --restart otherwise.
// It returns the exit code.
func runOnboard(ctx context.Context, c client.Client, restart func(ctx context.Context, ns, name string) error,
	rows []status.Row, names []string, meshCfg mesh.Config, o onboardOptions, out io.Writer, errOut io.Writer) int {
	named := map[string]bool{}
	for _, n := range names {
		named[n] = true
	}
	code, acted := ExitOK, 0
	worse := func(c int) {
		if code == ExitOK || c == ExitError {
			code = c
		}
	}
	prefix := ""
	if o.dryRun {
		prefix = "(dry run) "
	}
	for _, row := range rows {
		what := strings.TrimPrefix(row.Kind, "Virtual") // Machine or MachineInstance
		what = map[string]string{"Machine": "VM", "MachineInstance": "VMI"}[what]
		id := fmt.Sprintf("%s %s/%s", what, row.Namespace, row.Name)
		nothing := func() {
			if named[row.Name] {
				fmt.Fprintf(out, "%s: %s, nothing to onboard\n", id, row.State)
			}
		}
		if !slices.Contains(onboardable, row.State) {
			nothing()
			continue
		}
		vmi := &kubevirtv1.VirtualMachineInstance{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: row.Namespace, Name: row.Name}, vmi); err != nil {
			fmt.Fprintf(errOut, "error: %s: reading its VMI: %v\n", id, err)
			worse(ExitError)
			continue
		}
		if row.State == mesh.NotMeshable && mesh.PodInterface(&vmi.Spec) == nil {
			nothing() // no pod network: a restart does not help either
			continue
		}
		acted++
		if row.State == mesh.Broken && mesh.KubeVirtIstioOn(vmi) {
			// Nothing to give it: a plain migration moves it into a pod
			// created with the metadata it carries.
			fmt.Fprintf(out, "%s: not onboarded: it already carries the mesh metadata but runs in a launcher pod created before it "+
				"had it; %s\n", id, row.NextStep)
			worse(ExitTrouble)
			continue
		}
		ok, restartOnly, why := onboard.Migratable(vmi)
		switch {
		case ok:
			if err := onboardOne(ctx, c, vmi, meshCfg, o.dryRun, out, prefix+id); err != nil {
				fmt.Fprintf(errOut, "error: %s: %v\n", id, err)
				worse(onboardExit(err))
			}
		case restartOnly && !o.restart:
			fmt.Fprintf(out, "%s: not onboarded: %s; run again with --restart to restart it\n", id, why)
			worse(ExitTrouble)
		case restartOnly && row.Kind != "VirtualMachine":
			fmt.Fprintf(out, "%s: not onboarded: %s, and it is a standalone VMI, which nothing restarts: delete and re-create it "+
				"(a replica set's VMI: delete it, and the replica set starts a new one)\n", id, why)
			worse(ExitTrouble)
		case restartOnly:
			if !o.dryRun {
				if err := restart(ctx, row.Namespace, row.Name); err != nil {
					fmt.Fprintf(errOut, "error: %s: restarting it: %v\n", id, err)
					worse(ExitError)
					continue
				}
			}
			did := "restarted"
			if o.dryRun {
				did = "would restart it"
			}
			fmt.Fprintf(out, "%s%s: %s (%s); the webhook meshes its new VMI\n", prefix, id, did, why)
		default:
			fmt.Fprintf(out, "%s: not onboarded now: %s; try again later\n", id, why)
			worse(ExitTrouble)
		}
	}
	if acted == 0 && len(names) == 0 {
		fmt.Fprintln(out, "no VM here needs onboarding (none is NeedsRestart, Pinned, Broken or NotMeshable by its binding)")
	}
	return code
}

// onboardOne gives vmi the webhook's mesh metadata in one update and creates
// its migration, as virtmesh's controller does.
// readFailed: onboardOne could not read what it needs, or left the VMI
// half changed (exit code 1).
type readFailed struct{ error }

func (r readFailed) Unwrap() error { return r.error }

// leftOut: onboardOne refused, or was refused, and left the VM as it was
// (exit code 3).
type leftOut struct{ error }

func (l leftOut) Unwrap() error { return l.error }

// onboardExit is the exit code of an error of onboardOne: 3 when the VM was
// left out by a refusal (onboarding not possible now, the user's rights,
// KubeVirt's admission), 1 when something failed (a read, the network, the
// API server).
func onboardExit(err error) int {
	var failed readFailed
	var out leftOut
	switch {
	case errors.As(err, &failed):
		return ExitError
	case errors.As(err, &out), apierrors.IsForbidden(err), apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return ExitTrouble
	}
	return ExitError
}

func onboardOne(ctx context.Context, c client.Client, vmi *kubevirtv1.VirtualMachineInstance, meshCfg mesh.Config, dryRun bool,
	out io.Writer, id string) error {
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: vmi.Namespace}, ns); err != nil {
		return readFailed{fmt.Errorf("reading namespace %s (its labels decide the mesh): %w", vmi.Namespace, err)}
	}
	var vm *kubevirtv1.VirtualMachine
	if ref := metav1.GetControllerOf(vmi); ref != nil && ref.Kind == "VirtualMachine" {
		vm = &kubevirtv1.VirtualMachine{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: vmi.Namespace, Name: ref.Name}, vm); err != nil {
			vm = nil
		}
	}
	orig := vmi.DeepCopy()
	env := vmwebhook.Env{Namespace: vmwebhook.Namespace{Name: ns.Name, Labels: ns.Labels}, VM: vm}
	if err := onboard.Prepare(vmi, env, meshCfg, vmwebhook.DefaultConfig(), 1, mesh.OnboardedByCLI, time.Now()); err != nil {
		return leftOut{err}
	}
	o, err := mesh.ParseOnboarding(vmi.Annotations[mesh.OnboardingAnnotation])
	if err != nil {
		return err
	}
	if why, err := noInjector(ctx, c, ns.Labels, vmi.Labels); err != nil {
		return readFailed{err}
	} else if why != "" {
		return leftOut{fmt.Errorf("%s; VMI %s is unchanged", why, vmi.Name)}
	}
	m := onboard.Migration(vmi, o.Migration)
	// Ask first, changing nothing: may the user create the migration, and
	// does KubeVirt accept it now (no other migration runs, the VMI can
	// migrate)? Then a refusal leaves the VMI as it was.
	if err := c.Create(ctx, m.DeepCopy(), client.DryRunAll); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("the live migration would be refused: %w; VMI %s is unchanged", explain(err), vmi.Name)
	}
	if dryRun {
		fmt.Fprintf(out, "%s: would give VMI %s the mesh labels and annotations (%s) and create live migration %s "+
			"(the API server accepts it; the name carries the time it starts)\n", id, vmi.Name, changedKeys(orig, vmi), o.Migration)
		return nil
	}
	if err := c.Patch(ctx, vmi, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("updating VMI %s: %w", vmi.Name, explain(err))
	}
	if err := c.Create(ctx, m); err != nil && !apierrors.IsAlreadyExists(err) {
		// Put the VMI back as it was, so it stays consistently out of
		// the mesh; if that fails too, virtmesh's controller does it (or,
		// under the onboard policy, creates the migration) within a minute.
		if uerr := putBack(ctx, c, orig, vmi); uerr != nil {
			return readFailed{fmt.Errorf("creating live migration %s: %w; putting VMI %s back also failed (%v): within a minute virtmesh's "+
				"controller creates the migration (namespace policy onboard) or pins the VMI out of the mesh again", o.Migration,
				explain(err), vmi.Name, uerr)}
		}
		return fmt.Errorf("creating live migration %s: %w; VMI %s is back as it was", o.Migration, explain(err), vmi.Name)
	}
	fmt.Fprintf(out, "%s: onboarding by live migration %s; kubectl virtmesh status %s -n %s shows when it is Meshed\n",
		id, o.Migration, vmi.Name, vmi.Namespace)
	return nil
}

// noInjector says why no Istio injector would give the VM's new pod a proxy
// ("" when one would, or when the user may not read the injectors: the
// controller checks again before it acts on its own).
func noInjector(ctx context.Context, c client.Client, nsLabels, labels map[string]string) (string, error) {
	mwcs := &admissionregistrationv1.MutatingWebhookConfigurationList{}
	switch err := c.List(ctx, mwcs, client.MatchingLabels{injector.WebhookLabel: injector.WebhookLabelValue}); {
	case apierrors.IsForbidden(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("listing Istio's injectors: %w", err)
	}
	return injector.Missing(mwcs.Items, nsLabels, labels), nil
}

// putBack undoes on the VMI as it is now the label and annotation changes
// that turned before into after, keeping whatever else changed since (a
// status update, another controller's label): read afresh on a conflict.
func putBack(ctx context.Context, c client.Client, before, after *kubevirtv1.VirtualMachineInstance) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		now := &kubevirtv1.VirtualMachineInstance{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(after), now); err != nil {
			return err
		}
		if now.Annotations[mesh.OnboardingAnnotation] != after.Annotations[mesh.OnboardingAnnotation] {
			return errors.New("it changed since (another onboarding?); left as it is")
		}
		orig := now.DeepCopy()
		now.Labels = restore(now.Labels, before.Labels, after.Labels)
		now.Annotations = restore(now.Annotations, before.Annotations, after.Annotations)
		return c.Patch(ctx, now, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
	})
}

// restore sets in cur each key that differs between before and after back
// to its value in before (removing it where before had none).
func restore(cur, before, after map[string]string) map[string]string {
	out := maps.Clone(cur)
	if out == nil {
		out = map[string]string{}
	}
	for k, v := range after {
		if b, ok := before[k]; !ok {
			delete(out, k)
		} else if b != v {
			out[k] = b
		}
	}
	for k, b := range before {
		if _, ok := after[k]; !ok {
			out[k] = b
		}
	}
	return out
}

// changedKeys lists the labels and annotations b adds or changes over a.
func changedKeys(a, b *kubevirtv1.VirtualMachineInstance) string {
	var keys []string
	diff := func(kind string, x, y map[string]string) {
		for k, v := range y {
			if x[k] != v {
				keys = append(keys, kind+" "+k+"="+v)
			}
		}
		for k := range x {
			if _, ok := y[k]; !ok {
				keys = append(keys, kind+" "+k+" removed")
			}
		}
	}
	diff("label", a.Labels, b.Labels)
	annotations := map[string]string{}
	for k, v := range b.Annotations {
		if k != mesh.OnboardingAnnotation {
			annotations[k] = v
		}
	}
	diff("annotation", a.Annotations, annotations)
	slices.Sort(keys)
	return strings.Join(keys, ", ")
}

// explain turns a refusal into words about rights.
func explain(err error) error {
	if apierrors.IsForbidden(err) {
		return leftOut{errors.New("you may not: onboarding needs patch on virtualmachineinstances and create on " +
			"virtualmachineinstancemigrations (KubeVirt's kubevirt.io:migrate) in the namespace")}
	}
	return err
}

// restartVM calls KubeVirt's restart subresource, as virtctl restart does.
func restartVM(cfg *rest.Config) func(ctx context.Context, ns, name string) error {
	return func(ctx context.Context, ns, name string) error {
		c := rest.CopyConfig(cfg)
		c.APIPath = "/apis"
		c.GroupVersion = &schema.GroupVersion{Group: "subresources.kubevirt.io", Version: "v1"}
		c.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
		rc, err := rest.RESTClientFor(c)
		if err != nil {
			return err
		}
		err = rc.Put().Namespace(ns).Resource("virtualmachines").Name(name).SubResource("restart").
			SetHeader("Content-Type", "application/json").Body([]byte("{}")).Do(ctx).Error()
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("%w (is KubeVirt's virt-api running?)", err)
		}
		return explain(err)
	}
}
