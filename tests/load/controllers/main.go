// Command controllers is a load program for virtmesh's controllers. On the
// real control plane (hack/controlplane.sh) it creates mesh namespaces full of
// VirtualMachines and VMIs before virtmesh starts, then starts bin/virtmesh as
// its ServiceAccount and reports how long it takes until every istio-cni NAD
// and every Service exists, and the manager's peak resident memory.
//
//	make build && KUBEBUILDER_ASSETS=$(hack/controlplane.sh) go run ./tests/load/controllers
//
// The defaults are the scale: 100 namespaces, each with 10 VMs (5
// apps, v1 and v2, each VM running one VMI) and 40 standalone VMIs (20 apps,
// 2 replicas): 1,000 VMs, 5,000 VMIs, 2,500 Services, 100 NADs.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/app"
	"github.com/virtmesh/virtmesh/internal/controlplane"
	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
	"github.com/virtmesh/virtmesh/internal/testkit/local"
)

type scale struct {
	namespaces, vmApps, vmsPerApp, vmiApps, vmisPerApp int
}

func main() {
	var (
		s       scale
		binary  = flag.String("virtmesh", "bin/virtmesh", "the manager binary to start (make build)")
		root    = flag.String("repo", ".", "repository root (for tests/crds and manifests/rbac)")
		timeout = flag.Duration("timeout", 5*time.Minute, "give up when virtmesh has not converged by then")
		workers = flag.Int("create-workers", 16, "concurrent creates while filling the cluster")
		verbose = flag.Bool("v", false, "show virtmesh's log")
	)
	flag.IntVar(&s.namespaces, "namespaces", 100, "mesh namespaces")
	flag.IntVar(&s.vmApps, "vm-apps", 5, "apps of VMs per namespace")
	flag.IntVar(&s.vmsPerApp, "vms-per-app", 2, "VMs per VM app (v1, v2, ...), each running one VMI")
	flag.IntVar(&s.vmiApps, "vmi-apps", 20, "apps of standalone VMIs per namespace")
	flag.IntVar(&s.vmisPerApp, "vmis-per-app", 2, "standalone VMIs per VMI app")
	flag.Parse()
	if err := run(s, *binary, *root, *timeout, *workers, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "controllers load:", err)
		os.Exit(1)
	}
}

func run(s scale, binary, root string, timeout time.Duration, workers int, verbose bool) error {
	ctx := context.Background()
	fmt.Println("starting etcd, kube-apiserver and kube-controller-manager")
	cp, err := controlplane.Start(controlplane.Options{CRDDirs: []string{local.CRDDir(root)}})
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

	vms, vmis := s.namespaces*s.vmApps*s.vmsPerApp, s.namespaces*(s.vmApps*s.vmsPerApp+s.vmiApps*s.vmisPerApp)
	fmt.Printf("creating %d mesh namespaces, %d VirtualMachines, %d VMIs (virtmesh not running yet)\n", s.namespaces, vms, vmis)
	start := time.Now()
	if err := fill(ctx, admin, s, workers); err != nil {
		return err
	}
	fmt.Printf("created in %s\n", time.Since(start).Round(time.Millisecond))

	metrics, health := testkit.FreeAddress(), testkit.FreeAddress()
	out := io.Discard
	if verbose {
		out = os.Stderr
	}
	fmt.Printf("starting %s; waiting for %d Services and %d NADs\n", binary, s.namespaces*(s.vmApps+s.vmiApps), s.namespaces)
	t0 := time.Now()
	p, err := local.Start(cp, binary, []string{"--enable-webhook=false",
		"--leader-elect", "--leader-election-namespace=" + local.Namespace,
		"--metrics-bind-address=" + metrics, "--health-probe-bind-address=" + health}, out)
	if err != nil {
		return err
	}
	defer func() {
		if err := p.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()

	return waitConverged(ctx, admin, p, s, t0, timeout)
}

// waitConverged polls until every Service and NAD exists, checks them, and
// reports how long it took and the manager's peak resident memory.
func waitConverged(ctx context.Context, admin client.Client, p *local.Process, s scale, t0 time.Time, timeout time.Duration) error {
	services := s.namespaces * (s.vmApps + s.vmiApps)
	var peakRSS int64
	var lastLog time.Time
	for {
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("virtmesh exited: %w", err)
		}
		if rss, err := memKB(p.Pid(), "VmRSS"); err == nil {
			peakRSS = max(peakRSS, rss)
		}
		svcs, nads, err := count(ctx, admin)
		if err != nil {
			return err
		}
		elapsed := time.Since(t0)
		if svcs == services && nads == s.namespaces {
			hwm, err := memKB(p.Pid(), "VmHWM")
			if err != nil {
				return err
			}
			if err := verify(ctx, admin, s); err != nil {
				return fmt.Errorf("converged, but wrongly: %w", err)
			}
			fmt.Printf("converged in %s: %d Services, %d NADs, all checked\n", elapsed.Round(time.Millisecond), svcs, nads)
			fmt.Printf("peak RSS of virtmesh: %.1f MiB\n", float64(max(peakRSS, hwm))/1024)
			return nil
		}
		if time.Since(lastLog) > 5*time.Second {
			fmt.Printf("  %5.1fs: %d/%d Services, %d/%d NADs, RSS %.1f MiB\n", elapsed.Seconds(), svcs, services, nads, s.namespaces, float64(peakRSS)/1024)
			lastLog = time.Now()
		}
		if elapsed > timeout {
			return fmt.Errorf("not converged after %s: %d/%d Services, %d/%d NADs", timeout, svcs, services, nads, s.namespaces)
		}
		time.Sleep(200 * time.Millisecond)
	}
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
// start for it, as the webhook would have stored it) and standalone VMIs.
func fill(ctx context.Context, c client.Client, s scale, workers int) error {
	objs := make(chan client.Object, 256)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range objs {
				if err := c.Create(ctx, o); err != nil {
					errs <- fmt.Errorf("creating %s/%s: %w", o.GetNamespace(), o.GetName(), err)
					for range objs { // drain, so the producer never blocks
					}
					return
				}
			}
		}()
	}
	go func() {
		defer close(objs)
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
					objs <- vmi
				}
			}
			for a := range s.vmiApps {
				for r := range s.vmisPerApp {
					app := fmt.Sprintf("vmi-app-%d", a)
					objs <- testkit.MeshedVMI(ns, fmt.Sprintf("%s-%d", app, r), app, 8080, 9090)
				}
			}
		}
	}()
	wg.Wait()
	close(errs)
	return <-errs
}

func count(ctx context.Context, c client.Client) (int, int, error) {
	svcs := &metav1.PartialObjectMetadataList{}
	svcs.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ServiceList"))
	if err := c.List(ctx, svcs, client.MatchingLabels{mesh.ManagedByLabel: mesh.ManagedByValue}); err != nil {
		return 0, 0, err
	}
	nads := &metav1.PartialObjectMetadataList{}
	nads.SetGroupVersionKind(nadv1.SchemeGroupVersion.WithKind("NetworkAttachmentDefinitionList"))
	if err := c.List(ctx, nads, client.MatchingLabels{mesh.ManagedByLabel: mesh.ManagedByValue}); err != nil {
		return 0, 0, err
	}
	return len(svcs.Items), len(nads.Items), nil
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
