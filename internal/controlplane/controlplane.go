package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Options says what to install into the control plane at start.
type Options struct {
	// AssetsDir holds kube-apiserver, etcd and kube-controller-manager
	// (default: $KUBEBUILDER_ASSETS).
	AssetsDir string
	// CRDDirs are installed before Start returns, and served when it does.
	CRDDirs []string
	// MutatingWebhooks are installed with their clientConfig rewritten to the
	// local webhook server (see WebhookServing).
	MutatingWebhooks []*admissionregistrationv1.MutatingWebhookConfiguration
	// ControllerManagerLog receives kube-controller-manager's output (default: discarded).
	ControllerManagerLog io.Writer
	// APIServerFlags are more kube-apiserver flags (name without dashes → value).
	APIServerFlags map[string]string
}

// ControlPlane is a running etcd + kube-apiserver + kube-controller-manager.
type ControlPlane struct {
	env    *envtest.Environment
	config *rest.Config
	kcm    *exec.Cmd
	// kcmExited is closed when kube-controller-manager's process has exited.
	kcmExited chan struct{}
	kcmErr    error
	tmpDir    string
}

// Start brings the control plane up. Call Stop even when Start fails.
func Start(o Options) (*ControlPlane, error) {
	assets := o.AssetsDir
	if assets == "" {
		assets = os.Getenv("KUBEBUILDER_ASSETS")
	}
	if assets == "" {
		return nil, errors.New("no control-plane binaries: run hack/controlplane.sh and set KUBEBUILDER_ASSETS to the directory it prints")
	}
	for _, bin := range []string{"kube-apiserver", "etcd", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			return nil, fmt.Errorf("control-plane binary missing (run hack/controlplane.sh): %w", err)
		}
	}
	cp := &ControlPlane{env: &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     o.CRDDirs,
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{MutatingWebhooks: o.MutatingWebhooks},
	}}
	// envtest's default Service range is a /24: 253 Services. Room for the
	// controllers' load program (2,500 Services) and then some.
	cp.env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.96.0.0/16")
	for name, value := range o.APIServerFlags {
		cp.env.ControlPlane.GetAPIServer().Configure().Set(name, value)
	}
	cfg, err := cp.env.Start()
	if err != nil {
		return cp, fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	cp.config = cfg
	if err := cp.startControllerManager(o.ControllerManagerLog); err != nil {
		return cp, err
	}
	return cp, nil
}

// startControllerManager runs kube-controller-manager as a cluster admin with
// only the controllers the suites rely on.
func (cp *ControlPlane) startControllerManager(logTo io.Writer) error {
	admin, err := cp.env.AddUser(envtest.User{Name: "kube-controller-manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("creating kube-controller-manager credentials: %w", err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return fmt.Errorf("writing kube-controller-manager kubeconfig: %w", err)
	}
	cp.tmpDir, err = os.MkdirTemp("", "virtmesh-kcm-")
	if err != nil {
		return fmt.Errorf("creating kube-controller-manager directory: %w", err)
	}
	kubeconfigPath := filepath.Join(cp.tmpDir, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		return fmt.Errorf("writing kube-controller-manager kubeconfig: %w", err)
	}
	if logTo == nil {
		logTo = io.Discard
	}
	cp.kcm = exec.Command(filepath.Join(cp.env.BinaryAssetsDirectory, "kube-controller-manager"),
		"--kubeconfig="+kubeconfigPath,
		"--controllers=garbagecollector,namespace,clusterrole-aggregation",
		"--leader-elect=false",
		"--secure-port=0",
		"--concurrent-gc-syncs=5",
		"--namespace-sync-period=10s",
	)
	cp.kcm.Stdout, cp.kcm.Stderr = logTo, logTo
	if err := cp.kcm.Start(); err != nil {
		return fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	cp.kcmExited = make(chan struct{})
	go func() {
		cp.kcmErr = cp.kcm.Wait()
		close(cp.kcmExited)
	}()
	// Fail fast if it exits at once (a bad flag, an unreachable API server).
	select {
	case <-cp.kcmExited:
		cp.kcm = nil
		return fmt.Errorf("kube-controller-manager exited at start: %w", cp.kcmErr)
	case <-time.After(time.Second):
		return nil
	}
}

// Config returns a cluster-admin client configuration.
func (cp *ControlPlane) Config() *rest.Config { return rest.CopyConfig(cp.config) }

// WebhookServing returns where the local webhook server must listen, and with
// which certificates, for the installed webhook configurations to reach it.
func (cp *ControlPlane) WebhookServing() (host string, port int, certDir string) {
	w := cp.env.WebhookInstallOptions
	return w.LocalServingHost, w.LocalServingPort, w.LocalServingCertDir
}

// WebhookCA returns the CA that signed the local webhook serving certificate.
func (cp *ControlPlane) WebhookCA() []byte { return cp.env.WebhookInstallOptions.LocalServingCAData }

// ImpersonatedConfig returns a client configuration that acts as the given
// ServiceAccount, with the groups the API server would give its token.
func (cp *ControlPlane) ImpersonatedConfig(namespace, name string) *rest.Config {
	cfg := cp.Config()
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: fmt.Sprintf("system:serviceaccount:%s:%s", namespace, name),
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
	return cfg
}

// kcmStopGrace is how long Stop lets kube-controller-manager exit on SIGINT
// before killing it.
const kcmStopGrace = 5 * time.Second

// Stop stops kube-controller-manager, kube-apiserver and etcd.
func (cp *ControlPlane) Stop(ctx context.Context) error {
	var errs []error
	if cp.kcm != nil && cp.kcm.Process != nil {
		// kube-controller-manager keeps no state worth a graceful shutdown
		// here, and a young one can sit in its startup waits for a minute
		// after SIGINT (seen in a cold `make demo`), so it gets a few
		// seconds and is then killed.
		_ = cp.kcm.Process.Signal(os.Interrupt)
		grace, cancel := context.WithTimeout(ctx, kcmStopGrace)
		select {
		case <-cp.kcmExited:
		case <-grace.Done():
			_ = cp.kcm.Process.Kill()
			<-cp.kcmExited
		}
		cancel()
	}
	if cp.env != nil {
		if err := cp.env.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping kube-apiserver and etcd: %w", err))
		}
	}
	if cp.tmpDir != "" {
		errs = append(errs, os.RemoveAll(cp.tmpDir))
	}
	return errors.Join(errs...)
}

// KubeConfigFor returns a kubeconfig whose client certificate authenticates
// as the given ServiceAccount (with the groups the API server gives its
// tokens), for running a process such as bin/virtmesh against the control
// plane with exactly the ServiceAccount's permissions.
func (cp *ControlPlane) KubeConfigFor(namespace, name string) ([]byte, error) {
	user, err := cp.env.AddUser(envtest.User{
		Name:   fmt.Sprintf("system:serviceaccount:%s:%s", namespace, name),
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("creating credentials for %s/%s: %w", namespace, name, err)
	}
	return user.KubeConfig()
}
