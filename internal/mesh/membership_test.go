package mesh

import (
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	cfg := DefaultConfig()
	ignore := DefaultConfig()
	ignore.AmbientPolicy = AmbientIgnore
	l := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	cases := []struct {
		name                    string
		ns                      string
		nsLabels, labels, annos map[string]string
		cfg                     Config
		in, ambient, denied     bool
		reason                  string
	}{
		{name: "namespace enabled", ns: "vms", nsLabels: l("istio-injection", "enabled"), in: true, reason: `namespace "vms" is labelled istio-injection=enabled`},
		{name: "namespace disabled beats object opt-in", ns: "vms", nsLabels: l("istio-injection", "disabled"), labels: l(InjectKey, "true"), reason: "istio-injection=disabled"},
		{name: "namespace revision", ns: "vms", nsLabels: l(RevisionLabel, "canary"), in: true, reason: "istio.io/rev=canary"},
		{name: "revision and injection=disabled: injection wins", ns: "vms", nsLabels: l(RevisionLabel, "canary", "istio-injection", "disabled"), reason: "istio-injection=disabled"},
		{name: "object label opt-in", ns: "vms", labels: l(InjectKey, "true"), in: true, reason: "the VMI is labelled sidecar.istio.io/inject=true"},
		{name: "object revision opt-in", ns: "vms", labels: l(RevisionLabel, "stable"), in: true, reason: "istio.io/rev=stable"},
		{name: "object annotation alone does not opt in", ns: "vms", annos: l(InjectKey, "true"), reason: "has no Istio injection label"},
		{name: "label opt-out", ns: "vms", nsLabels: l("istio-injection", "enabled"), labels: l(InjectKey, "false"), reason: "opts out"},
		{name: "annotation opt-out without label", ns: "vms", nsLabels: l("istio-injection", "enabled"), annos: l(InjectKey, "false"), reason: "opts out"},
		{name: "label wins over annotation", ns: "vms", nsLabels: l("istio-injection", "enabled"), labels: l(InjectKey, "true"), annos: l(InjectKey, "false"), in: true},
		{name: "enforced opt-out is denied", ns: "vms", nsLabels: l("istio-injection", "enabled", EnforceLabel, "true"), labels: l(InjectKey, "false"), denied: true, reason: "virtmesh.io/enforce=true"},
		{name: "enforce outside the mesh is inert", ns: "vms", nsLabels: l(EnforceLabel, "true"), labels: l(InjectKey, "false"), reason: "opts out"},
		{name: "ambient with sidecar policy", ns: "vms", nsLabels: l(DataplaneModeLabel, "ambient"), in: true, ambient: true, reason: "ambient mode"},
		{name: "ambient with ignore policy", ns: "vms", nsLabels: l(DataplaneModeLabel, "ambient"), cfg: ignore, reason: "--ambient-policy=ignore"},
		{name: "ambient plus injection is plain sidecar", ns: "vms", nsLabels: l(DataplaneModeLabel, "ambient", "istio-injection", "enabled"), in: true},
		{name: "excluded namespace", ns: "kube-system", nsLabels: l("istio-injection", "enabled"), labels: l(InjectKey, "true"), reason: "excluded"},
		{name: "excluded namespace never denies", ns: "kubevirt", nsLabels: l("istio-injection", "enabled", EnforceLabel, "true"), labels: l(InjectKey, "false"), reason: "excluded"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			if c.AmbientPolicy == "" {
				c = cfg
			}
			d := Decide(tc.ns, tc.nsLabels, tc.labels, tc.annos, c)
			if d.InMesh != tc.in || d.Ambient != tc.ambient || d.Denied != tc.denied {
				t.Fatalf("got in=%v ambient=%v denied=%v, want in=%v ambient=%v denied=%v (%s)",
					d.InMesh, d.Ambient, d.Denied, tc.in, tc.ambient, tc.denied, d.Reason())
			}
			if !strings.Contains(d.Reason(), tc.reason) {
				t.Fatalf("reason %q does not say %q", d.Reason(), tc.reason)
			}
		})
	}
}

func TestNamespaceInMesh(t *testing.T) {
	cfg := DefaultConfig()
	if d := NamespaceInMesh("vms", map[string]string{DataplaneModeLabel: "ambient"}, cfg); !d.InMesh || !d.Ambient {
		t.Fatalf("ambient namespace with sidecar policy: %+v", d)
	}
	if d := NamespaceInMesh("vms", map[string]string{"istio-injection": "enabled"}, cfg); !d.InMesh || d.Ambient {
		t.Fatalf("injection namespace: %+v", d)
	}
	if d := NamespaceInMesh("kube-system", map[string]string{"istio-injection": "enabled"}, cfg); d.InMesh {
		t.Fatalf("excluded namespace: %+v", d)
	}
}

func BenchmarkDecide(b *testing.B) {
	cfg := DefaultConfig()
	ns := map[string]string{"istio-injection": "enabled", "kubernetes.io/metadata.name": "vms"}
	labels := map[string]string{"kubevirt.io/vm": "vm1", "app": "web"}
	b.ReportAllocs()
	for b.Loop() {
		if !Decide("vms", ns, labels, nil, cfg).InMesh {
			b.Fatal("not in mesh")
		}
	}
}
