// Command webhook is a load program for virtmesh's admission webhook: it
// drives the webhook server over HTTPS with keep-alive connections at several
// concurrency levels, with a realistic mix of AdmissionReviews, and reports
// throughput, p50, p99 and max latency per level.
//
// By default it serves the webhook in-process on 127.0.0.1 with
// controller-runtime's webhook server and virtmesh's real handler, exactly as
// the manager registers it (TLS with a fresh self-signed certificate). With
// -url and -ca it drives a webhook that is already running elsewhere.
//
//	go run ./tests/load/webhook -clients 1,8,64 -duration 10s
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	goruntime "runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/virtmesh/virtmesh/webhook"
)

func main() {
	var (
		levels   = flag.String("clients", "1,8,64", "comma-separated numbers of concurrent keep-alive clients")
		duration = flag.Duration("duration", 10*time.Second, "measured time per level")
		warmup   = flag.Duration("warmup", 2*time.Second, "unmeasured time before each level")
		url      = flag.String("url", "", "drive this webhook URL instead of an in-process server (needs -ca)")
		caFile   = flag.String("ca", "", "PEM CA bundle that signed the server at -url")
		rate     = flag.Int("rate", 0, "open loop: offer this many requests per second in total, spread over the clients "+
			"(latency counts from the time a request is emitted, so queueing for a free client shows); 0 means closed loop, each client sends as fast as it can")
		profile = flag.String("cpuprofile", "", "write a CPU profile of the whole run (server and clients) to this file")
	)
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	if *profile != "" {
		f, err := os.Create(*profile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "webhook load:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*levels, *duration, *warmup, *url, *caFile, *rate); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "webhook load:", err)
		os.Exit(1)
	}
}

func run(levels string, duration, warmup time.Duration, url, caFile string, rate int) error {
	var clients []int
	for _, s := range strings.Split(levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-clients: %q is not a positive number", s)
		}
		clients = append(clients, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var ca []byte
	switch {
	case url != "" && caFile == "":
		return fmt.Errorf("-url needs -ca")
	case url != "":
		var err error
		if ca, err = os.ReadFile(caFile); err != nil {
			return err
		}
	default:
		var err error
		if url, ca, err = serveInProcess(ctx); err != nil {
			return err
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("no certificate in the CA bundle")
	}
	bodies, err := reviews()
	if err != nil {
		return err
	}

	loop := "closed loop"
	if rate > 0 {
		loop = fmt.Sprintf("open loop at %d req/s", rate)
	}
	fmt.Printf("virtmesh webhook load: %s, GOMAXPROCS=%d, %d request kinds, %s, %s per level\n",
		url, goruntime.GOMAXPROCS(0), len(bodies), loop, duration)
	fmt.Printf("%8s %10s %12s %10s %10s %10s %8s\n", "clients", "requests", "req/s", "p50", "p99", "max", "errors")
	for _, n := range clients {
		tr := &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: n,
			MaxConnsPerHost:     n,
			ForceAttemptHTTP2:   false,
		}
		hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		drive(hc, url, bodies, n, rate, warmup) // warm the connections and the server
		r := drive(hc, url, bodies, n, rate, duration)
		tr.CloseIdleConnections()
		fmt.Printf("%8d %10d %12.0f %10s %10s %10s %8d\n", n, len(r.latencies),
			float64(len(r.latencies))/r.elapsed.Seconds(),
			percentile(r.latencies, 50), percentile(r.latencies, 99), percentile(r.latencies, 100), r.errors)
		if r.firstErr != nil {
			fmt.Printf("         first error: %v\n", r.firstErr)
		}
	}
	return nil
}

type result struct {
	latencies []time.Duration
	elapsed   time.Duration
	errors    int64
	firstErr  error
}

// drive runs n clients for d. In a closed loop (rate 0) each sends the
// request kinds in turn, starting at a different one, as fast as it can. In an
// open loop a pacer emits rate requests per second and the clients take them;
// a request's latency counts from its emission, so time spent waiting for a
// free client is measured too (no coordinated omission).
func drive(hc *http.Client, url string, bodies [][]byte, n, rate int, d time.Duration) result {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		all      []time.Duration
		errs     atomic.Int64
		firstErr atomic.Value
	)
	start := time.Now()
	deadline := start.Add(d)
	var schedule chan time.Time
	if rate > 0 {
		schedule = make(chan time.Time, rate*int(d/time.Second+1))
		go func() {
			defer close(schedule)
			interval := time.Second / time.Duration(rate)
			for at := start; at.Before(deadline); at = at.Add(interval) {
				time.Sleep(time.Until(at))
				// The request arrives when the pacer wakes: this VM's timers
				// oversleep by up to milliseconds, which is no fault of the server.
				schedule <- time.Now()
			}
		}()
	}
	for c := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<14)
			send := func(i int, t0 time.Time) {
				err := post(hc, url, bodies[i%len(bodies)])
				lat = append(lat, time.Since(t0))
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
			if schedule != nil {
				for i := c; ; i += n {
					at, ok := <-schedule
					if !ok {
						break
					}
					send(i, at)
				}
			} else {
				for i := c; time.Now().Before(deadline); i++ {
					send(i, time.Now())
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := result{latencies: all, elapsed: time.Since(start), errors: errs.Load()}
	if e, ok := firstErr.Load().(error); ok {
		r.firstErr = e
	}
	return r
}

func post(hc *http.Client, url string, body []byte) error {
	resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&review); err != nil {
		return fmt.Errorf("decoding response: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body) // let the connection be reused
	if resp.StatusCode != http.StatusOK || review.Response == nil || !review.Response.Allowed {
		return fmt.Errorf("unexpected response: HTTP %d %+v", resp.StatusCode, review.Response)
	}
	return nil
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := (len(d)*p + 99) / 100
	i = min(max(i-1, 0), len(d)-1)
	return d[i].Round(time.Microsecond)
}

// serveInProcess starts controller-runtime's webhook server with virtmesh's
// handler, as the manager does, and returns its URL and CA.
func serveInProcess(ctx context.Context) (string, []byte, error) {
	dir, err := os.MkdirTemp("", "virtmesh-load-")
	if err != nil {
		return "", nil, err
	}
	ca, err := writeServingCert(dir)
	if err != nil {
		return "", nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()

	srv := ctrlwebhook.NewServer(ctrlwebhook.Options{Host: "127.0.0.1", Port: port, CertDir: dir})
	meshed := map[string]string{"istio-injection": "enabled", "kubernetes.io/metadata.name": "vms"}
	h := &webhook.Handler{Config: webhook.DefaultConfig(), NamespaceLabels: func(context.Context, string) (map[string]string, error) {
		return meshed, nil
	}}
	srv.Register(webhook.Path, &admission.Webhook{Handler: h})
	go func() {
		if err := srv.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "webhook server:", err)
			os.Exit(1)
		}
	}()
	for range 100 {
		if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
			_ = c.Close()
			return fmt.Sprintf("https://127.0.0.1:%d%s", port, webhook.Path), ca, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", nil, fmt.Errorf("webhook server did not start listening on port %d", port)
}

// writeServingCert writes tls.crt/tls.key for 127.0.0.1, signed by a new CA,
// into dir and returns the CA in PEM.
func writeServingCert(dir string) ([]byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "virtmesh-load-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "virtmesh-webhook"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(dir+"/tls.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(dir+"/tls.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}

// reviews returns the request mix, as the API server would send it: VMIs that
// virt-controller creates from seed 004's VirtualMachine (most of the traffic),
// the same VMI on reinvocation (already mutated: no patch), a standalone VMI
// with bridge binding, and a large VMI (20 disks, 8 interfaces, 40 ports).
func reviews() ([][]byte, error) {
	typical := seedVMI()
	bridge := seedVMI()
	bridge.Name, bridge.OwnerReferences = "legacy-bridge", nil
	bridge.Spec.Domain.Devices.Interfaces[0].InterfaceBindingMethod = kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}
	mutated := seedVMI()
	mutated.Labels["sidecar.istio.io/inject"] = "true"
	mutated.Labels["app"] = "istio-vm"
	mutated.Annotations["sidecar.istio.io/inject"] = "true"
	mutated.Annotations["virtmesh.io/mutations"] = "inject,app"
	large := seedVMI()
	large.Name = "large"
	for i := range 20 {
		large.Spec.Domain.Devices.Disks = append(large.Spec.Domain.Devices.Disks, kubevirtv1.Disk{Name: fmt.Sprintf("data%d", i)})
	}
	for i := 1; i < 8; i++ {
		name := fmt.Sprintf("net%d", i)
		large.Spec.Domain.Devices.Interfaces = append(large.Spec.Domain.Devices.Interfaces, kubevirtv1.Interface{Name: name,
			InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}})
		large.Spec.Networks = append(large.Spec.Networks, kubevirtv1.Network{Name: name,
			NetworkSource: kubevirtv1.NetworkSource{Multus: &kubevirtv1.MultusNetwork{NetworkName: "vlan" + strconv.Itoa(i)}}})
	}
	for p := range 40 {
		large.Spec.Domain.Devices.Interfaces[0].Ports = append(large.Spec.Domain.Devices.Interfaces[0].Ports,
			kubevirtv1.Port{Name: fmt.Sprintf("http-%d", p), Port: int32(8000 + p), Protocol: "TCP"})
	}
	// Seven typical requests for each of the others.
	mix := []*kubevirtv1.VirtualMachineInstance{typical, typical, typical, typical, typical, typical, typical, mutated, bridge, large}
	var out [][]byte
	for i, vmi := range mix {
		raw, err := json.Marshal(vmi)
		if err != nil {
			return nil, err
		}
		review := admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID:       types.UID(fmt.Sprintf("0d4c1f2e-load-%04d", i)),
				Kind:      metav1.GroupVersionKind{Group: "kubevirt.io", Version: "v1", Kind: "VirtualMachineInstance"},
				Resource:  metav1.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachineinstances"},
				Namespace: "vms", Name: vmi.Name, Operation: admissionv1.Create,
				UserInfo: authenticationUser(),
				Object:   runtime.RawExtension{Raw: raw},
				DryRun:   ptr.To(false),
				Options:  runtime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1","fieldManager":"virt-controller"}`)},
			},
		}
		body, err := json.Marshal(review)
		if err != nil {
			return nil, err
		}
		out = append(out, body)
	}
	return out, nil
}

// seedVMI is the VMI virt-controller creates from seed 004's istio-vm
// VirtualMachine once its manual Istio steps are removed.
func seedVMI() *kubevirtv1.VirtualMachineInstance {
	return &kubevirtv1.VirtualMachineInstance{
		TypeMeta: metav1.TypeMeta{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstance"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "istio-vm", Namespace: "vms",
			Labels: map[string]string{"kubevirt.io/vm": "istio-vm", "kubevirt.io/size": "small", "kubevirt.io/domain": "istio-vm"},
			Annotations: map[string]string{
				"kubevirt.io/latest-observed-api-version":  "v1",
				"kubevirt.io/storage-observed-api-version": "v1",
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: "istio-vm",
				UID: "5b0a1c9e-2f3d-4c4e-9a8b-7d6e5f4a3b2c", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
			Finalizers: []string{"kubevirt.io/virtualMachineControllerFinalize"},
		},
		Spec: kubevirtv1.VirtualMachineInstanceSpec{
			Domain: kubevirtv1.DomainSpec{
				Devices: kubevirtv1.Devices{
					Interfaces: []kubevirtv1.Interface{{Name: "default", Ports: []kubevirtv1.Port{{Name: "http", Port: 8080, Protocol: "TCP"}},
						InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Masquerade: &kubevirtv1.InterfaceMasquerade{}}}},
					Disks: []kubevirtv1.Disk{
						{Name: "containerdisk", DiskDevice: kubevirtv1.DiskDevice{Disk: &kubevirtv1.DiskTarget{Bus: "virtio"}}},
						{Name: "cloudinitdisk", DiskDevice: kubevirtv1.DiskDevice{Disk: &kubevirtv1.DiskTarget{Bus: "virtio"}}},
					},
				},
				Machine:   &kubevirtv1.Machine{Type: "q35"},
				Resources: kubevirtv1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1024M")}},
			},
			Networks: []kubevirtv1.Network{*kubevirtv1.DefaultPodNetwork()},
			Volumes: []kubevirtv1.Volume{
				{Name: "containerdisk", VolumeSource: kubevirtv1.VolumeSource{ContainerDisk: &kubevirtv1.ContainerDiskSource{
					Image: "quay.io/kubevirt/fedora-cloud-container-disk-demo:latest"}}},
				{Name: "cloudinitdisk", VolumeSource: kubevirtv1.VolumeSource{CloudInitNoCloud: &kubevirtv1.CloudInitNoCloudSource{
					UserData: "#cloud-config\npassword: fedora\nchpasswd: { expire: False }\n" +
						"bootcmd:\n  - sudo dnf install -y python3\n  - sudo python3 -m http.server 8080 --directory /tmp &\n"}}},
			},
			TerminationGracePeriodSeconds: ptr.To[int64](0),
		},
	}
}

func authenticationUser() authenticationv1.UserInfo {
	return authenticationv1.UserInfo{Username: "system:serviceaccount:kubevirt:kubevirt-controller",
		UID: "3e9f2a55-1c0b-4f7e-8d2a-6b5c4d3e2f1a", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kubevirt", "system:authenticated"}}
}
