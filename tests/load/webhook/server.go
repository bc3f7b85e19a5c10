package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/virtmesh/virtmesh/internal/mesh"
	"github.com/virtmesh/virtmesh/internal/testkit"
	vmwebhook "github.com/virtmesh/virtmesh/webhook"
)

// serveInProcess starts controller-runtime's webhook server with virtmesh's
// webhook registered as the manager registers it, and returns its URL and CA.
func serveInProcess(ctx context.Context) (string, []byte, error) {
	dir, err := os.MkdirTemp("", "virtmesh-load-")
	if err != nil {
		return "", nil, err
	}
	ca, err := writeServingCert(dir)
	if err != nil {
		return "", nil, err
	}
	addr := testkit.FreeAddress()
	_, portText, _ := net.SplitHostPort(addr)
	port, err := strconv.Atoi(portText)
	if err != nil {
		return "", nil, err
	}

	srv := ctrlwebhook.NewServer(ctrlwebhook.Options{Host: "127.0.0.1", Port: port, CertDir: dir})
	meshed := map[string]string{"istio-injection": "enabled", "kubernetes.io/metadata.name": "vms"}
	fixedLabels := func(context.Context, string) (map[string]string, error) { return meshed, nil }
	// The manager reads a VMI's VirtualMachine from the API server; here it
	// comes from memory, so the figures leave out that read's latency.
	vm := seedVM()
	fixedVM := func(context.Context, string, string) (*kubevirtv1.VirtualMachine, error) { return vm.DeepCopy(), nil }
	if err := vmwebhook.Register(srv, mesh.DefaultConfig(), vmwebhook.DefaultConfig(),
		vmwebhook.Inputs{NamespaceLabels: fixedLabels, VirtualMachines: fixedVM}); err != nil {
		return "", nil, err
	}
	go func() {
		if err := srv.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "webhook server:", err)
			os.Exit(1)
		}
	}()
	for range 100 {
		if c, err := net.Dial("tcp", addr); err == nil {
			_ = c.Close()
			return "https://" + addr + vmwebhook.Path, ca, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", nil, fmt.Errorf("webhook server did not start listening on %s", addr)
}

// writeServingCert writes tls.crt/tls.key for 127.0.0.1, signed by a new CA,
// into dir and returns the CA in PEM.
func writeServingCert(dir string) ([]byte, error) {
	ca := certTemplate(1, "virtmesh-load-ca")
	ca.IsCA, ca.BasicConstraintsValid, ca.KeyUsage = true, true, x509.KeyUsageCertSign
	caDER, caKey, err := newCert(ca, nil, nil)
	if err != nil {
		return nil, err
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		return nil, err
	}
	serving := certTemplate(2, "virtmesh-webhook")
	serving.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	serving.KeyUsage, serving.ExtKeyUsage = x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	der, key, err := newCert(serving, ca, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	for name, block := range map[string]*pem.Block{"tls.crt": {Type: "CERTIFICATE", Bytes: der}, "tls.key": {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, err
		}
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}

// certTemplate is a certificate valid from an hour ago for a day.
func certTemplate(serial int64, commonName string) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: commonName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)}
}

// newCert makes a key and a certificate for it from tmpl, signed by
// parentKey, or self-signed when parent is nil.
func newCert(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	return der, key, err
}
