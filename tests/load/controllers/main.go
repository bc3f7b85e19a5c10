// Command controllers is a load program for virtmesh's controllers. On the
// real control plane (hack/controlplane.sh) it creates mesh namespaces full of
// VirtualMachines and running VMIs, each with its launcher pod object (an
// istio-proxy, ready, as Istio and kubelet would leave it), before virtmesh
// starts; then starts bin/virtmesh as its ServiceAccount and reports how long
// it takes until every istio-cni NAD and every Service exists and every VMI's
// mesh state is exported, the manager's peak resident memory, its API writes
// over full resyncs afterwards (none expected), and how long
// `kubectl virtmesh status -A` takes on that cluster. It exits non-zero when
// a goal is missed.
//
//	make load-controllers        # 1,000 VMs, 5,000 VMIs, 100 namespaces
//	make load-controllers-20k    # 4,000 VMs, 20,000 VMIs, 400 namespaces
//
// Each namespace holds 10 VMs (5 apps, v1 and v2, each VM running one VMI)
// and 40 standalone VMIs (20 apps, 2 replicas) by default.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/app"
	"github.com/virtmesh/virtmesh/internal/cli"
	"github.com/virtmesh/virtmesh/internal/controlplane"
	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
	"github.com/virtmesh/virtmesh/internal/testkit/local"
)

// memoryLimit is the limits.memory of the container virtmesh runs as ("": none).
var memoryLimit string

var baselineOnly = flag.Bool("baseline", false,
	"instead of starting virtmesh, create the Services it would (one ClusterIP Service per app) with -baseline-workers clients "+
		"and nothing else running, and report how long the API server takes: what virtmesh's convergence is measured against")

var baselineWorkers = flag.Int("baseline-workers", 4, "clients creating Services in -baseline (virtmesh's --controller-workers default)")

var cacheChecker = flag.Bool("apiserver-cache-checker", false,
	"leave kube-apiserver's watch-cache consistency checker on (it re-lists every pod and VMI every 5 min on the cores virtmesh shares)")

var clusterIPAllocator = flag.String("clusterip-allocator", "ipaddress",
	"kube-apiserver's ClusterIP allocator: ipaddress (Kubernetes 1.34's, locked on: one allocation at a time, each listing every "+
		"IPAddress) or bitmap (the allocator of Kubernetes 1.32 and earlier: kube-apiserver runs with --emulated-version=1.33 and "+
		"MultiCIDRServiceAllocator=false), to tell virtmesh's own Service throughput from the API server's")

var (
	cpuProfile        = flag.String("cpu-profile", "", "write a CPU profile of virtmesh from its start here (go tool pprof)")
	cpuProfileSeconds = flag.Int("cpu-profile-seconds", 60, "how long -cpu-profile samples")
)

var progressEvery = flag.Duration("progress", 5*time.Second, "how often to print progress while waiting")

type scale struct {
	namespaces, vmApps, vmsPerApp, vmiApps, vmisPerApp int
	pods                                               bool
}

func (s scale) vms() int      { return s.namespaces * s.vmApps * s.vmsPerApp }
func (s scale) services() int { return s.namespaces * (s.vmApps + s.vmiApps) }
func (s scale) vmis() int     { return s.namespaces * (s.vmApps*s.vmsPerApp + s.vmiApps*s.vmisPerApp) }

// goals are what a run must meet.
type goals struct {
	converge, cli time.Duration
	rssMB         float64
	resyncs       int
	syncPeriod    time.Duration
}

func main() {
	var (
		s       scale
		binary  = flag.String("virtmesh", "bin/virtmesh", "the manager binary to start (make build)")
		root    = flag.String("repo", ".", "repository root (for tests/crds and manifests/rbac)")
		timeout = flag.Duration("timeout", 5*time.Minute, "give up when virtmesh has not converged by then")
		workers = flag.Int("create-workers", 16, "concurrent creates while filling the cluster")
		verbose = flag.Bool("v", false, "show virtmesh's log")
		profile = flag.String("heap-profile", "", "write virtmesh's heap profile (in use and allocated) here when the run ends")
		g       goals
		extra   stringList
	)
	flag.Var(&extra, "virtmesh-arg", "one more argument for virtmesh, e.g. --controller-workers=8 (repeatable)")
	flag.BoolVar(&s.pods, "pods", true, "give every VMI a launcher pod object (running, istio-proxy ready)")
	flag.DurationVar(&g.converge, "goal-converge", 60*time.Second, "every Service, NAD and state within this of manager start")
	flag.Float64Var(&g.rssMB, "goal-rss-mb", 150, "manager peak RSS at most this (MB, 10^6 bytes, as the issue states it)")
	flag.DurationVar(&g.cli, "goal-cli", 10*time.Second, "kubectl virtmesh status -A answers within this")
	flag.IntVar(&g.resyncs, "resyncs", 2, "full resyncs to watch for API writes after convergence (0: skip)")
	flag.DurationVar(&g.syncPeriod, "sync-period", time.Minute,
		"virtmesh's --sync-period for the run: longer than convergence, or resyncs swamp the work queues while it converges")
	flag.StringVar(&memoryLimit, "memory-limit", "",
		"run virtmesh as the Deployment does in a container with this limits.memory (e.g. 240Mi; empty: no limit)")
	flag.IntVar(&s.namespaces, "namespaces", 100, "mesh namespaces")
	flag.IntVar(&s.vmApps, "vm-apps", 5, "apps of VMs per namespace")
	flag.IntVar(&s.vmsPerApp, "vms-per-app", 2, "VMs per VM app (v1, v2, ...), each running one VMI")
	flag.IntVar(&s.vmiApps, "vmi-apps", 20, "apps of standalone VMIs per namespace")
	flag.IntVar(&s.vmisPerApp, "vmis-per-app", 2, "standalone VMIs per VMI app")
	flag.Parse()
	if err := run(s, g, *binary, *root, *timeout, *workers, *verbose, *profile, extra); err != nil {
		fmt.Fprintln(os.Stderr, "controllers load:", err)
		os.Exit(1)
	}
}

func run(s scale, g goals, binary, root string, timeout time.Duration, workers int, verbose bool, profile string, extra []string) (retErr error) {
	ctx := context.Background()
	fmt.Printf("starting etcd, kube-apiserver (ClusterIP allocator: %s) and kube-controller-manager\n", *clusterIPAllocator)
	// kube-apiserver's watch-cache consistency checker (feature
	// DetectCacheInconsistency, on by default since 1.34) lists every pod
	// and VMI from etcd every 5 minutes and hashes them: at 20,000 of each,
	// a third of the 2 cores virtmesh shares with the control plane here.
	// On a real cluster it runs on the control plane's own machines.
	apiserverFlags := map[string]string{}
	var gates []string
	switch *clusterIPAllocator {
	case "ipaddress":
		if !*cacheChecker {
			gates = append(gates, "DetectCacheInconsistency=false")
		}
	case "bitmap":
		if *cacheChecker {
			return errors.New("-apiserver-cache-checker: Kubernetes 1.33, which -clusterip-allocator bitmap emulates, has no cache consistency checker")
		}
		// MultiCIDRServiceAllocator is locked on from 1.34; emulating 1.33
		// is the supported way to turn it off on a 1.34 kube-apiserver.
		// (1.33 has no cache consistency checker: nothing to turn off.)
		// The list features 1.34 turns on and 1.33 does not are turned on,
		// so that only the allocator differs: streaming lists (WatchList),
		// which virtmesh's informers use, and lists from cache snapshots.
		apiserverFlags["emulated-version"] = "1.33"
		gates = append(gates, "MultiCIDRServiceAllocator=false", "WatchList=true", "ListFromCacheSnapshot=true")
	default:
		return fmt.Errorf("-clusterip-allocator %q: want ipaddress or bitmap", *clusterIPAllocator)
	}
	if len(gates) > 0 {
		apiserverFlags["feature-gates"] = strings.Join(gates, ",")
	}
	auditDir, err := os.MkdirTemp("", "virtmesh-load-audit-")
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			fmt.Fprintf(os.Stderr, "kube-apiserver's audit log of writes is kept: %s\n", filepath.Join(auditDir, "audit.log"))
			return
		}
		_ = os.RemoveAll(auditDir)
	}()
	audit, auditFlags, err := newAuditLog(auditDir)
	if err != nil {
		return err
	}
	maps.Copy(apiserverFlags, auditFlags)
	cp, err := controlplane.Start(controlplane.Options{CRDDirs: []string{local.CRDDir(root)}, APIServerFlags: apiserverFlags})
	defer stopControlPlane(cp)
	if err != nil {
		return err
	}
	cfg := cp.Config()
	cfg.QPS, cfg.Burst = -1, 0
	admin, err := client.New(cfg, client.Options{Scheme: app.NewScheme()})
	if err != nil {
		return err
	}
	if err := local.InstallRBAC(ctx, admin, root); err != nil {
		return err
	}

	pods := 0
	if s.pods {
		pods = s.vmis()
	}
	fmt.Printf("creating %d mesh namespaces, %d VirtualMachines, %d VMIs, %d launcher pods (virtmesh not running yet)\n",
		s.namespaces, s.vms(), s.vmis(), pods)
	start := time.Now()
	if err := fill(ctx, admin, s, workers); err != nil {
		return err
	}
	fmt.Printf("created in %s\n", time.Since(start).Round(time.Millisecond))

	if *baselineOnly {
		return baseline(ctx, admin, s, *baselineWorkers)
	}

	metrics, health, pprof := testkit.FreeAddress(), testkit.FreeAddress(), testkit.FreeAddress()
	out := io.Discard
	if verbose {
		out = os.Stderr
	}
	fmt.Printf("starting %s; waiting for %d Services, %d NADs and the state of %d VMIs\n", binary, s.services(), s.namespaces, s.vmis())
	var env []string
	if memoryLimit != "" {
		// As the Deployment does: VIRTMESH_MEMORY_LIMIT from the container's
		// limits.memory (virtmesh's Go memory limit is then 80% of it).
		env = append(env, "VIRTMESH_MEMORY_LIMIT="+memoryLimit)
		fmt.Printf("virtmesh runs as in a container with limits.memory=%s (VIRTMESH_MEMORY_LIMIT: a Go memory limit of 80%% of it)\n", memoryLimit)
	}
	counts, err := newCounter(ctx, cfg)
	if err != nil {
		return err
	}
	if len(extra) > 0 {
		fmt.Printf("virtmesh's extra arguments: %s\n", strings.Join(extra, " "))
	}
	t0 := time.Now()
	p, err := local.Start(cp, binary, append([]string{"--enable-webhook=false",
		"--leader-elect", "--leader-election-namespace=" + local.Namespace, "--sync-period=" + g.syncPeriod.String(),
		"--metrics-bind-address=" + metrics, "--health-probe-bind-address=" + health, "--pprof-bind-address=" + pprof}, extra...), env, out)
	if err != nil {
		return err
	}
	defer func() {
		if err := p.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()

	cpuDone := make(chan error, 1)
	if *cpuProfile != "" {
		go func() { cpuDone <- saveCPUProfile(pprof, *cpuProfile, *cpuProfileSeconds) }()
	} else {
		cpuDone <- nil
	}
	defer func() {
		if err := <-cpuDone; err != nil {
			fmt.Fprintln(os.Stderr, "CPU profile:", err)
		}
	}()

	var missed []string
	converged, peak, err := waitConverged(ctx, admin, counts, p, s, metrics, t0, timeout)
	if err != nil {
		return err
	}
	if calls, err := serviceCalls(ctx, cp.Config()); err == nil {
		fmt.Printf("Service requests to the API server so far: %s\n", calls)
	}
	if profile != "" {
		if err := saveHeapProfile(pprof, profile+".converged"); err != nil {
			return err
		}
	}
	if converged > g.converge {
		missed = append(missed, fmt.Sprintf("converged in %s, goal %s", converged.Round(time.Millisecond), g.converge))
	}
	if g.resyncs > 0 {
		if err := steadyWrites(cp.Config(), p, audit, metrics, g, s.services()); err != nil {
			missed = append(missed, err.Error())
		}
		if hwm, err := memKB(p.Pid(), "VmHWM"); err == nil {
			peak = max(peak, float64(hwm)/1024)
		}
	}
	peakMB := peak * (1 << 20) / 1e6
	fmt.Printf("peak RSS of virtmesh: %.1f MiB = %.1f MB (goal %.0f MB)\n", peak, peakMB, g.rssMB)
	if cpu, err := cpuSeconds(p.Pid()); err == nil {
		fmt.Printf("CPU time of virtmesh over the whole run: %.1f s (user + system)\n", cpu)
	}
	if peakMB > g.rssMB {
		missed = append(missed, fmt.Sprintf("peak RSS %.1f MB, goal %.0f MB", peakMB, g.rssMB))
	}
	if took, err := timeCLI(ctx, cp.Config(), s); err != nil {
		missed = append(missed, err.Error())
	} else {
		fmt.Printf("kubectl virtmesh status -A: %s for %d rows (goal %s)\n", took.Round(time.Millisecond), s.vms()+s.namespaces*s.vmiApps*s.vmisPerApp, g.cli)
		if took > g.cli {
			missed = append(missed, fmt.Sprintf("kubectl virtmesh status -A took %s, goal %s", took.Round(time.Millisecond), g.cli))
		}
	}
	if profile != "" {
		if err := saveHeapProfile(pprof, profile); err != nil {
			return err
		}
	}
	if len(missed) > 0 {
		return fmt.Errorf("goals missed:\n  %s", strings.Join(missed, "\n  "))
	}
	fmt.Println("every goal met")
	return nil
}

// exitedError says that virtmesh ended before the run did, and how.
func exitedError(err error) error {
	if err == nil {
		return errors.New("virtmesh exited early with status 0 (it was stopped: SIGTERM or SIGINT)")
	}
	return fmt.Errorf("virtmesh exited early: %w", err)
}

// waitConverged polls until every Service and NAD exists and every VMI's
// state is exported (Meshed), checks the Services, and returns how long it
// took and the manager's peak resident memory so far (MiB).
func waitConverged(ctx context.Context, admin client.Client, counts *counter, p *local.Process, s scale, metrics string, t0 time.Time,
	timeout time.Duration) (time.Duration, float64, error) {
	services := s.namespaces * (s.vmApps + s.vmiApps)
	var peakRSS int64
	var lastLog, lastScrape time.Time
	var states, meshed float64
	for {
		if exited, err := p.Exited(); exited {
			return 0, 0, exitedError(err)
		}
		if rss, err := memKB(p.Pid(), "VmRSS"); err == nil {
			peakRSS = max(peakRSS, rss)
		}
		svcs, nads := counts.count()
		if time.Since(lastScrape) >= time.Second { // Prometheus scrapes far less often
			states, _ = metricSum(metrics, "virtmesh_vmis", "")
			meshed, _ = metricSum(metrics, "virtmesh_vmis", `state="Meshed"`)
			lastScrape = time.Now()
		}
		wantMeshed := s.vmis()
		if !s.pods {
			wantMeshed = 0
		}
		elapsed := time.Since(t0)
		if svcs == services && nads == s.namespaces && int(states) == s.vmis() && int(meshed) == wantMeshed {
			hwm, err := memKB(p.Pid(), "VmHWM")
			if err != nil {
				return 0, 0, err
			}
			if err := verify(ctx, admin, s); err != nil {
				return 0, 0, fmt.Errorf("converged, but wrongly: %w", err)
			}
			fmt.Printf("converged in %s: %d Services, %d NADs, all checked; %d VMIs in virtmesh_vmis, %d Meshed\n",
				elapsed.Round(time.Millisecond), svcs, nads, int(states), int(meshed))
			return elapsed, float64(max(peakRSS, hwm)) / 1024, nil
		}
		if time.Since(lastLog) >= *progressEvery {
			fmt.Printf("  %5.1fs: %d/%d Services, %d/%d NADs, %d/%d states (%d Meshed), RSS %.1f MiB\n", elapsed.Seconds(), svcs, services,
				nads, s.namespaces, int(states), s.vmis(), int(meshed), float64(peakRSS)/1024)
			lastLog = time.Now()
		}
		if elapsed > timeout {
			return 0, 0, fmt.Errorf("not converged after %s: %d/%d Services, %d/%d NADs, %d/%d states", timeout, svcs, services, nads,
				s.namespaces, int(states), s.vmis())
		}
		// The counts come from a watch; the metrics are scraped once a second.
		time.Sleep(250 * time.Millisecond)
	}
}

// steadyWrites watches g.resyncs full resyncs after convergence and fails if
// virtmesh wrote to the API server (its leader lease aside: the audit log
// names every writer) or no resync happened. The other writers (the API
// server's own controllers, kube-controller-manager) are listed, not counted.
func steadyWrites(cfg *rest.Config, p *local.Process, audit *auditLog, metrics string, g goals, services int) error {
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	// Events about what virtmesh did while converging are still being sent
	// (the recorder queues them): wait until the writes stop.
	settleStart := time.Now()
	writesBefore, byBefore, err := apiWrites(ctx, cs)
	if err != nil {
		return err
	}
	first := writesBefore
	for quiet := 0; quiet < 3; {
		time.Sleep(time.Second)
		w, by, err := apiWrites(ctx, cs)
		if err != nil {
			return err
		}
		if w == writesBefore {
			quiet++
		} else {
			quiet = 0
		}
		writesBefore, byBefore = w, by
		if time.Since(settleStart) > 3*time.Minute {
			return fmt.Errorf("virtmesh still writes %s after converging", time.Since(settleStart).Round(time.Second))
		}
	}
	fmt.Printf("writes settled %s after convergence (%.0f more, the recorder's queued Events)\n",
		time.Since(settleStart).Round(time.Second), writesBefore-first)
	virtmeshUser := fmt.Sprintf("system:serviceaccount:%s:%s", local.Namespace, local.ServiceAccount)
	sofar, err := audit.writesSince(0, time.Time{})
	if err != nil {
		return err
	}
	fmt.Printf("virtmesh's writes so far (audit log): %s\n", countWrites(sofar[virtmeshUser]))
	reconcilesBefore, _ := metricSum(metrics, "controller_runtime_reconcile_total", "")
	byControllerBefore, _ := metricByLabel(metrics, "controller_runtime_reconcile_total", "controller")
	// controller-runtime gives each informer a resync period of 0.9 to 1.1
	// times --sync-period: the window holds at least g.resyncs of each, and
	// may hold one more of some (the reconcile count varies with that).
	wait := time.Duration(float64(g.resyncs)*1.1*float64(g.syncPeriod)) + 5*time.Second
	fmt.Printf("watching at least %d full resyncs (%s) for API writes\n", g.resyncs, wait)
	windowStart := time.Now()
	auditOffset, err := audit.offset()
	if err != nil {
		return err
	}
	for end := time.Now().Add(wait); time.Now().Before(end); time.Sleep(time.Second) {
		if exited, err := p.Exited(); exited {
			return exitedError(err)
		}
	}
	writesAfter, byAfter, err := apiWrites(ctx, cs)
	if err != nil {
		return err
	}
	reconcilesAfter, _ := metricSum(metrics, "controller_runtime_reconcile_total", "")
	byControllerAfter, _ := metricByLabel(metrics, "controller_runtime_reconcile_total", "controller")
	byUser, err := audit.writesSince(auditOffset, windowStart)
	if err != nil {
		return err
	}
	mine := len(byUser[virtmeshUser])
	fmt.Printf("over %s: %.0f reconciles (%s; %.1f Service resyncs), %d API writes by virtmesh (%.0f by anyone, leases aside)\n",
		wait, reconcilesAfter-reconcilesBefore, diffByLabel(byControllerBefore, byControllerAfter),
		(byControllerAfter["service"]-byControllerBefore["service"])/float64(max(services, 1)), mine, writesAfter-writesBefore)
	if mine == 0 && len(byUser) > 0 {
		fmt.Printf("writes by others in the window:%s\n", describeWrites(byUser))
	}
	switch {
	case mine != 0:
		var what []string
		for k, v := range byAfter {
			if d := v - byBefore[k]; d != 0 {
				what = append(what, fmt.Sprintf("%s: %.0f", k, d))
			}
		}
		slices.Sort(what)
		return fmt.Errorf("%d API writes by virtmesh at steady state, goal 0; by writer:%s\n  all writes by verb and resource: %s%s",
			mine, describeWrites(byUser), strings.Join(what, ", "), eventsSince(ctx, cs, windowStart.Add(-time.Second))) // Event times are to the second
	case reconcilesAfter-reconcilesBefore == 0:
		return fmt.Errorf("no resync happened in %s", wait)
	}
	return nil
}

// eventsSince lists the Events written since t (created or counted again),
// to tell which one a steady-state Event write was.
func eventsSince(ctx context.Context, cs kubernetes.Interface, t time.Time) string {
	events, err := cs.CoreV1().Events("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return "; listing Events: " + err.Error()
	}
	var out []string
	for _, e := range events.Items {
		last := e.LastTimestamp.Time
		if e.Series != nil {
			last = e.Series.LastObservedTime.Time
		}
		if !last.Before(t) {
			out = append(out, fmt.Sprintf("\n    %s %s/%s %s %s x%d: %s", cmp.Or(e.Source.Component, e.ReportingController), e.InvolvedObject.Kind, e.InvolvedObject.Name,
				e.Type, e.Reason, e.Count, e.Message))
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "; Events written in the window:" + strings.Join(out, "")
}

// apiWrites sums the API server's write requests (apiserver_request_total),
// leases aside.
func apiWrites(ctx context.Context, cs kubernetes.Interface) (float64, map[string]float64, error) {
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	sum := 0.0
	by := map[string]float64{}
	label := func(line, name string) string {
		v, _ := labelValue(line, name)
		return v
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "apiserver_request_total{") || strings.Contains(line, `resource="leases"`) {
			continue
		}
		for _, verb := range []string{"POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION"} {
			if strings.Contains(line, `verb="`+verb+`"`) {
				v, _ := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
				sum += v
				by[verb+" "+label(line, "resource")+"/"+label(line, "subresource")] += v
			}
		}
	}
	return sum, by, nil
}

// serviceCalls sums the API server's requests on Services by verb and
// code: a create that finds the name taken (409) costs a read and a retry.
func serviceCalls(ctx context.Context, cfg *rest.Config) (string, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return "", err
	}
	by := map[string]float64{}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "apiserver_request_total{") || !strings.Contains(line, `resource="services"`) ||
			!strings.Contains(line, `subresource=""`) {
			continue
		}
		verb, _ := labelValue(line, "verb")
		code, _ := labelValue(line, "code")
		v, _ := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
		by[verb+" "+code] += v
	}
	return diffByLabel(nil, by), nil
}

// timeCLI runs kubectl virtmesh status -A as an admin and checks its rows.
func timeCLI(ctx context.Context, cfg *rest.Config, s scale) (time.Duration, error) {
	var out, errOut bytes.Buffer
	start := time.Now()
	code := cli.Main(ctx, []string{"status", "-A"}, cli.Env{Stdout: &out, Stderr: &errOut, RESTConfig: cfg})
	took := time.Since(start)
	if code != cli.ExitOK {
		return took, fmt.Errorf("kubectl virtmesh status -A: exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if want := s.vms() + s.namespaces*s.vmiApps*s.vmisPerApp; len(lines)-1 != want {
		return took, fmt.Errorf("kubectl virtmesh status -A printed %d rows, want %d", len(lines)-1, want)
	}
	// With launcher pods, every VM and VMI runs in one with a ready proxy
	// and its namespace's NAD (which exists).
	for _, l := range lines[1:] {
		if !s.pods {
			break
		}
		f := strings.Fields(l)
		if len(f) < 7 || f[3] != string(mesh.Meshed) || f[6] != f[0]+"/istio-cni" || strings.Contains(l, " (missing)") || strings.Contains(l, " (?)") {
			return took, fmt.Errorf("kubectl virtmesh status -A: a row that is not Meshed with its namespace's NAD: %q", l)
		}
	}
	return took, nil
}

// saveCPUProfile samples virtmesh's CPU for seconds from now (as soon as
// its pprof endpoint answers) into path.
func saveCPUProfile(addr, path string, seconds int) error {
	var resp *http.Response
	var err error
	for range 50 {
		if resp, err = http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds)); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	if err := saveBody(resp, path); err != nil {
		return err
	}
	fmt.Printf("CPU profile of virtmesh's first %d s: %s (go tool pprof -top %s)\n", seconds, path, path)
	return nil
}

// saveHeapProfile writes virtmesh's heap profile to path.
func saveHeapProfile(addr, path string) error {
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap")
	if err != nil {
		return err
	}
	if err := saveBody(resp, path); err != nil {
		return err
	}
	fmt.Printf("heap profile of virtmesh: %s (go tool pprof -sample_index=inuse_space %s)\n", path, path)
	return nil
}

// saveBody writes a pprof answer to path, and closes it.
func saveBody(resp *http.Response, path string) error {
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("virtmesh's pprof endpoint answered %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// metricSum sums a metric's series on virtmesh's metrics endpoint whose
// labels hold match.
func metricSum(addr, name, match string) (float64, error) {
	sum := 0.0
	err := eachSample(addr, name, func(line string, v float64) {
		if strings.Contains(line, match) {
			sum += v
		}
	})
	return sum, err
}

// metricByLabel sums a metric's samples by the value of one label.
func metricByLabel(addr, name, label string) (map[string]float64, error) {
	out := map[string]float64{}
	err := eachSample(addr, name, func(line string, v float64) {
		if value, ok := labelValue(line, label); ok {
			out[value] += v
		}
	})
	return out, err
}

// eachSample calls fn with each sample line of metric name on virtmesh's
// metrics endpoint, and its value.
func eachSample(addr, name string, fn func(line string, v float64)) error {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64); err == nil {
			fn(line, v)
		}
	}
	return sc.Err()
}

// labelValue is the value of label in a sample line.
func labelValue(line, label string) (string, bool) {
	_, rest, ok := strings.Cut(line, label+`="`)
	if !ok {
		return "", false
	}
	value, _, _ := strings.Cut(rest, `"`)
	return value, true
}

// diffByLabel prints after-before per label value, sorted, zeros left out.
func diffByLabel(before, after map[string]float64) string {
	keys := make([]string, 0, len(after))
	for k := range after {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		if d := after[k] - before[k]; d != 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f", k, d))
		}
	}
	return strings.Join(parts, ", ")
}

func stopControlPlane(cp *controlplane.ControlPlane) {
	if cp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = cp.Stop(ctx)
}

// fill creates the namespaces, VMs (each with the VMI virt-controller would
// start for it, as the webhook would have stored it, running) and standalone
// VMIs, each with its launcher pod (s.pods).
// baseline creates one ClusterIP Service per app, as virtmesh would (its
// selector and ports; no owners), with workers clients, and prints how long
// the API server took, and how fast it went per thousand.
func baseline(ctx context.Context, c client.Client, s scale, workers int) error {
	svcs := make(chan *corev1.Service, 256)
	var created atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	total := s.namespaces * (s.vmApps + s.vmiApps)
	fmt.Printf("baseline: creating %d ClusterIP Services with %d clients, virtmesh not running\n", total, workers)
	start := time.Now()
	var mu sync.Mutex // guards last
	last := start
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for svc := range svcs {
				if err := c.Create(ctx, svc); err != nil {
					errs <- fmt.Errorf("creating Service %s/%s: %w", svc.Namespace, svc.Name, err)
					for range svcs {
					}
					return
				}
				if n := created.Add(1); n%1000 == 0 {
					mu.Lock()
					fmt.Printf("  %6.1fs: %d/%d Services (the last 1,000 in %s)\n", time.Since(start).Seconds(), n, total,
						time.Since(last).Round(100*time.Millisecond))
					last = time.Now()
					mu.Unlock()
				}
			}
		}()
	}
	port := func(p int32) corev1.ServicePort {
		return corev1.ServicePort{Name: fmt.Sprintf("http-%d", p), Port: p, TargetPort: intstr.FromInt32(p), Protocol: corev1.ProtocolTCP}
	}
	for n := range s.namespaces {
		ns := fmt.Sprintf("mesh-%03d", n)
		for a := range s.vmApps + s.vmiApps {
			app, ports := fmt.Sprintf("vm-app-%d", a), []corev1.ServicePort{port(8080)}
			if a >= s.vmApps {
				app, ports = fmt.Sprintf("vmi-app-%d", a-s.vmApps), []corev1.ServicePort{port(8080), port(9090)}
			}
			svcs <- &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns},
				Spec: corev1.ServiceSpec{Selector: map[string]string{mesh.AppLabel: app}, Ports: ports}}
		}
	}
	close(svcs)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	took := time.Since(start)
	fmt.Printf("baseline: %d Services in %s (%.0f/s)\n", total, took.Round(time.Millisecond), float64(total)/took.Seconds())
	return nil
}

func fill(ctx context.Context, c client.Client, s scale, workers int) error {
	vmis := make(chan *kubevirtv1.VirtualMachineInstance, 256)
	errs := make(chan error, workers+1)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for vmi := range vmis {
				if err := startVMI(ctx, c, vmi, s.pods); err != nil {
					errs <- fmt.Errorf("creating %s/%s: %w", vmi.Namespace, vmi.Name, err)
					for range vmis { // drain, so the producer never blocks
					}
					return
				}
			}
		}()
	}
	go func() {
		defer close(vmis)
		for n := range s.namespaces {
			ns := fmt.Sprintf("mesh-%03d", n)
			if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"istio-injection": "enabled"}}}); err != nil {
				errs <- err
				return
			}
			for a := range s.vmApps {
				for v := range s.vmsPerApp {
					app := fmt.Sprintf("vm-app-%d", a)
					vm := &kubevirtv1.VirtualMachine{
						ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-v%d", app, v+1), Namespace: ns},
						Spec: kubevirtv1.VirtualMachineSpec{RunStrategy: ptr.To(kubevirtv1.RunStrategyAlways),
							Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
								ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{mesh.AppLabel: app, mesh.VersionLabel: fmt.Sprintf("v%d", v+1)}},
								Spec:       testkit.VMISpec(8080),
							}},
					}
					if err := c.Create(ctx, vm); err != nil {
						errs <- err
						return
					}
					vmi := testkit.MeshedVMI(ns, vm.Name, app, 8080)
					vmi.Labels[mesh.VersionLabel] = fmt.Sprintf("v%d", v+1)
					vmi.Labels["kubevirt.io/vm"] = vm.Name
					vmi.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(vm, kubevirtv1.VirtualMachineGroupVersionKind)}
					vmis <- vmi
				}
			}
			for a := range s.vmiApps {
				for r := range s.vmisPerApp {
					app := fmt.Sprintf("vmi-app-%d", a)
					vmis <- testkit.MeshedVMI(ns, fmt.Sprintf("%s-%d", app, r), app, 8080, 9090)
				}
			}
		}
	}()
	wg.Wait()
	close(errs)
	return <-errs
}

// startVMI creates a VMI as virt-controller leaves a running one (the VMI
// CRD has no status subresource: the status is stored as created) and, with
// pod, its launcher pod with a ready istio-proxy, as Istio's injector and
// kubelet would leave it.
func startVMI(ctx context.Context, c client.Client, vmi *kubevirtv1.VirtualMachineInstance, pod bool) error {
	node := fmt.Sprintf("node%02d", len(vmi.Name)%8)
	vmi.Status.Phase, vmi.Status.NodeName = kubevirtv1.Running, node
	if err := c.Create(ctx, vmi); err != nil {
		return err
	}
	if !pod {
		return nil
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "virt-launcher-" + vmi.Name + "-x7k2p", Namespace: vmi.Namespace,
			Labels: map[string]string{"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": string(vmi.UID), mesh.AppLabel: vmi.Labels[mesh.AppLabel],
				mesh.InjectKey: "true", "security.istio.io/tlsMode": "istio"},
			// As Istio's injector in multus mode renders it (the NAD is virtmesh's, per namespace here).
			Annotations: map[string]string{mesh.InjectKey: "true", "kubectl.kubernetes.io/default-container": "compute",
				"k8s.v1.cni.cncf.io/networks": "istio-cni",
				"sidecar.istio.io/status":     `{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert"],"revision":"default"}`},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(vmi, kubevirtv1.VirtualMachineInstanceGroupVersionKind)}},
		Spec: corev1.PodSpec{NodeName: node, AutomountServiceAccountToken: ptr.To(false),
			InitContainers: []corev1.Container{{Name: "istio-init", Image: "docker.io/istio/proxyv2:1.30.0", Args: []string{"istio-iptables", "-p", "15001"}}},
			Containers: []corev1.Container{
				{Name: "compute", Image: "quay.io/kubevirt/virt-launcher:v1.9.0", Command: []string{"/usr/bin/virt-launcher-monitor", "--name", vmi.Name}},
				{Name: mesh.ProxyContainer, Image: "docker.io/istio/proxyv2:1.30.0", Args: []string{"proxy", "sidecar", "--domain", vmi.Namespace + ".svc.cluster.local"},
					Env: []corev1.EnvVar{{Name: "ISTIO_META_APP_CONTAINERS", Value: "compute"}, {Name: "ISTIO_META_CLUSTER_ID", Value: "Kubernetes"}}},
			}},
	}
	if err := c.Create(ctx, p); err != nil {
		return err
	}
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.1", ContainerStatuses: []corev1.ContainerStatus{
		{Name: "compute", Ready: true, Image: p.Spec.Containers[0].Image}, {Name: mesh.ProxyContainer, Ready: true, Image: p.Spec.Containers[1].Image}}}
	return c.Status().Update(ctx, p)
}

// counter counts virtmesh's Services and NADs from a watch (metadata
// only): listing 10,000 Services every second would load the API server
// that virtmesh shares the machine with, and slow what is being measured.
type counter struct {
	svcs, nads toolscache.SharedIndexInformer
}

func newCounter(ctx context.Context, cfg *rest.Config) (*counter, error) {
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	f := metadatainformer.NewFilteredSharedInformerFactory(mc, 0, metav1.NamespaceAll, func(o *metav1.ListOptions) {
		o.LabelSelector = mesh.ManagedByLabel + "=" + mesh.ManagedByValue
	})
	c := &counter{svcs: f.ForResource(corev1.SchemeGroupVersion.WithResource("services")).Informer(),
		nads: f.ForResource(nadv1.SchemeGroupVersion.WithResource("network-attachment-definitions")).Informer()}
	for _, inf := range []toolscache.SharedIndexInformer{c.svcs, c.nads} {
		if err := inf.SetTransform(func(o any) (any, error) {
			if m, ok := o.(*metav1.PartialObjectMetadata); ok {
				m.ManagedFields = nil
			}
			return o, nil
		}); err != nil {
			return nil, err
		}
	}
	f.Start(ctx.Done())
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("watching %s: not synced", typ)
		}
	}
	return c, nil
}

// count is how many of virtmesh's Services and NADs exist.
func (c *counter) count() (int, int) {
	return len(c.svcs.GetStore().ListKeys()), len(c.nads.GetStore().ListKeys())
}

// verify checks every Service: the right owners and ports.
func verify(ctx context.Context, c client.Client, s scale) error {
	svcs := &corev1.ServiceList{}
	if err := c.List(ctx, svcs, client.MatchingLabels{mesh.ManagedByLabel: mesh.ManagedByValue}); err != nil {
		return err
	}
	for _, svc := range svcs.Items {
		owners, ports := s.vmsPerApp, 1
		if strings.HasPrefix(svc.Name, "vmi-app-") {
			owners, ports = s.vmisPerApp, 2
		}
		if len(svc.OwnerReferences) != owners || len(svc.Spec.Ports) != ports {
			return fmt.Errorf("service %s/%s has %d owners and %d ports, want %d and %d",
				svc.Namespace, svc.Name, len(svc.OwnerReferences), len(svc.Spec.Ports), owners, ports)
		}
	}
	return nil
}

// cpuSeconds is the user and system CPU time a process has used so far
// (/proc/<pid>/stat fields 14 and 15, in clock ticks of 1/100 s on Linux).
func cpuSeconds(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the rest follows its ')'.
	_, rest, ok := strings.Cut(string(raw), ") ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, raw)
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return (utime + stime) / 100, nil
}

// memKB reads a memory figure (VmRSS, VmHWM) of a process, in KiB.
func memKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
