// Package cli is kubectl virtmesh: the mesh state of VMs, and whether a
// namespace's new VMs would be meshed, read with the user's own kubeconfig.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/status"
	"github.com/virtmesh/virtmesh/internal/version"
)

// Exit codes.
const (
	ExitOK = 0
	// ExitError: something could not be read (forbidden, unreachable).
	ExitError = 1
	// ExitUsage: wrong command line.
	ExitUsage = 2
	// ExitTrouble: a VM is Broken or NeedsRestart (status), or VMs created
	// in the namespace now would not start or not be meshed (check-namespace).
	ExitTrouble = 3
)

const usage = `kubectl virtmesh: is my VM in the Istio mesh, and if not, why?

Usage:
  kubectl virtmesh status [VM|VMI ...] [-n NAMESPACE | -A] [-o wide|json|yaml]
      The mesh state of each VirtualMachine and standalone VMI, read from its
      launcher pod: KIND, NAME, STATE, PROXY, SERVICE, NAD, REASON / NEXT STEP.
  kubectl virtmesh check-namespace NAMESPACE [-o json|yaml]
      Whether VMs created in NAMESPACE now would be meshed, by which Istio
      injector, with which istio-cni NetworkAttachmentDefinition.
  kubectl virtmesh onboard [VM|VMI ...] [-n NAMESPACE | -A] [--dry-run] [--restart]
      Bring VMs that were running before their namespace joined the mesh
      (NeedsRestart, Pinned) into it by a live migration, with your own
      rights; --restart restarts those only a restart can bring in.
  kubectl virtmesh version

States: Meshed, Starting, Pending, NotInMesh, NotMeshable, NeedsRestart,
NoProxy, Broken, Pinned, Onboarding, Stopped (see the README).

Exit codes: 0 fine; 1 a read failed (forbidden, unreachable); 2 usage;
3 a VM is Broken or NeedsRestart, check-namespace found a problem, or
onboard left a VM out.

Flags:
`

// Env is what Main runs with; tests replace the client.
type Env struct {
	Stdout, Stderr io.Writer
	// NewClient builds the client from the kubeconfig flags (nil: the real one).
	NewClient func(cfg *rest.Config) (client.Client, error)
	// Restart restarts a VM (nil: KubeVirt's restart subresource).
	Restart func(ctx context.Context, namespace, name string) error
	// RESTConfig, when set, is used instead of loading a kubeconfig, with
	// namespace as the default namespace.
	RESTConfig *rest.Config
	Namespace  string
}

// Main runs kubectl virtmesh with args (without the program name) and
// returns the exit code.
func Main(ctx context.Context, args []string, env Env) int {
	fs := pflag.NewFlagSet("kubectl-virtmesh", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	var (
		kubeconfig, kubeContext, namespace, output string
		allNamespaces                              bool
		timeout                                    time.Duration
		onboardOpts                                onboardOptions
	)
	excluded := mesh.DefaultExcludedNamespaces
	ambient := string(mesh.AmbientSidecar)
	fs.StringVar(&kubeconfig, "kubeconfig", "", "Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).")
	fs.StringVar(&kubeContext, "context", "", "The kubeconfig context to use.")
	fs.StringVarP(&namespace, "namespace", "n", "", "The namespace (default: the context's).")
	fs.BoolVarP(&allNamespaces, "all-namespaces", "A", false, "List VMs in every namespace.")
	fs.StringVarP(&output, "output", "o", "", "Output format: wide, json or yaml.")
	fs.DurationVar(&timeout, "request-timeout", 30*time.Second, "How long to wait for the API server.")
	fs.StringSliceVar(&excluded, "excluded-namespaces", excluded, "Namespaces virtmesh never meshes (as its --excluded-namespaces).")
	fs.BoolVar(&onboardOpts.dryRun, "dry-run", false, "onboard: say what would be done, change nothing.")
	fs.BoolVar(&onboardOpts.restart, "restart", false, "onboard: restart the VMs only a restart can bring into the mesh (bridge, passt, not live-migratable).")
	fs.StringVar(&ambient, "ambient-policy", ambient, "What virtmesh does with VMs in ambient namespaces (as its --ambient-policy): sidecar or ignore.")
	fs.Usage = func() {
		fmt.Fprint(env.Stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return ExitOK
		}
		fmt.Fprintf(env.Stderr, "error: %v; try kubectl virtmesh help\n", err)
		return ExitUsage
	}
	if err := (mesh.Config{AmbientPolicy: mesh.AmbientPolicy(ambient)}).Validate(); err != nil {
		fmt.Fprintln(env.Stderr, "error:", err)
		return ExitUsage
	}
	if err := status.ValidFormat(output); err != nil {
		fmt.Fprintln(env.Stderr, "error:", err)
		return ExitUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return ExitUsage
	}
	cmd, names := fs.Arg(0), fs.Args()[1:]
	switch cmd {
	case "version":
		fmt.Fprintln(env.Stdout, version.String())
		return ExitOK
	case "help":
		fs.SetOutput(env.Stdout)
		env.Stderr = env.Stdout
		fs.Usage()
		return ExitOK
	case "status", "onboard":
		if allNamespaces && namespace != "" {
			fmt.Fprintln(env.Stderr, "error: use -n or -A, not both")
			return ExitUsage
		}
		if allNamespaces && len(names) > 0 {
			fmt.Fprintln(env.Stderr, "error: name VMs in one namespace (-n), not with -A")
			return ExitUsage
		}
	case "check-namespace":
		if len(names) > 1 || len(names) == 1 && namespace != "" && names[0] != namespace {
			fmt.Fprintln(env.Stderr, "error: check-namespace takes one namespace")
			return ExitUsage
		}
		if output == status.FormatWide {
			fmt.Fprintln(env.Stderr, "error: check-namespace prints text, json or yaml")
			return ExitUsage
		}
	default:
		fmt.Fprintf(env.Stderr, "error: unknown command %q; try kubectl virtmesh help\n", cmd)
		return ExitUsage
	}

	cfg, defaultNS, err := restConfig(env, kubeconfig, kubeContext)
	if err != nil {
		fmt.Fprintln(env.Stderr, "error:", err)
		return ExitError
	}
	cfg.Timeout = timeout
	if namespace == "" {
		namespace = defaultNS
	}
	newClient := env.NewClient
	if newClient == nil {
		newClient = func(cfg *rest.Config) (client.Client, error) {
			return client.New(cfg, client.Options{Scheme: status.NewScheme()})
		}
	}
	c, err := newClient(cfg)
	if err != nil {
		fmt.Fprintln(env.Stderr, "error: cannot reach the API server:", err)
		return ExitError
	}
	meshCfg := mesh.DefaultConfig()
	meshCfg.ExcludedNamespaces, meshCfg.AmbientPolicy = excluded, mesh.AmbientPolicy(ambient)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	if cmd == "check-namespace" {
		ns := namespace
		if len(names) == 1 {
			ns = names[0]
		}
		check, err := status.CheckNamespace(ctx, c, ns, meshCfg)
		if err != nil {
			fmt.Fprintln(env.Stderr, "error:", err)
			return ExitError
		}
		if err := status.PrintCheck(env.Stdout, check, output); err != nil {
			fmt.Fprintln(env.Stderr, "error:", err)
			return ExitError
		}
		if len(check.Problems) > 0 {
			return ExitTrouble
		}
		return ExitOK
	}
	rows, err := status.Collect(ctx, c, status.Query{Namespace: namespace, AllNamespaces: allNamespaces, Names: names, Config: meshCfg})
	var notFound *status.NotFoundError
	if err != nil && (cmd == "onboard" || !errors.As(err, &notFound) || len(rows) == 0) {
		fmt.Fprintln(env.Stderr, "error:", err)
		return ExitError
	}
	if cmd == "onboard" {
		restart := env.Restart
		if restart == nil {
			restart = restartVM(cfg)
		}
		return runOnboard(ctx, c, restart, rows, names, meshCfg, onboardOpts, env.Stdout, env.Stderr)
	}
	if err := status.PrintRows(env.Stdout, rows, output, allNamespaces); err != nil {
		fmt.Fprintln(env.Stderr, "error:", err)
		return ExitError
	}
	if notFound != nil {
		// The rows found, then what was not, as kubectl get does.
		fmt.Fprintln(env.Stderr, "error:", notFound)
		return ExitError
	}
	if status.Trouble(rows) {
		return ExitTrouble
	}
	return ExitOK
}

// restConfig loads the kubeconfig as kubectl does (flags, $KUBECONFIG,
// ~/.kube/config, in-cluster) and the context's namespace.
func restConfig(env Env, kubeconfig, kubeContext string) (*rest.Config, string, error) {
	if env.RESTConfig != nil {
		ns := env.Namespace
		if ns == "" {
			ns = "default"
		}
		return withLimits(rest.CopyConfig(env.RESTConfig)), ns, nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: kubeContext})
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("loading the kubeconfig: %w", err)
	}
	ns, _, err := loader.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("reading the context's namespace: %w", err)
	}
	cfg.UserAgent = "kubectl-virtmesh/" + strings.TrimPrefix(version.String(), "virtmesh ")
	return withLimits(cfg), ns, nil
}

// withLimits sets the client's rate limits where cfg sets none: client-go's
// default (5 requests per second) would spend a minute reading 300 NADs one
// by one for a user who may not list them. These are the limits kubectl
// gives its discovery client.
func withLimits(cfg *rest.Config) *rest.Config {
	if cfg.QPS == 0 && cfg.RateLimiter == nil {
		cfg.QPS, cfg.Burst = 50, 300
	}
	return cfg
}
