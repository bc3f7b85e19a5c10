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
		{name: "opt-out value no", ns: "vms", nsLabels: l("istio-injection", "enabled"), labels: l(InjectKey, "no"), reason: "opts out with sidecar.istio.io/inject=no"},
		{name: "opt-out value Off annotation", ns: "vms", nsLabels: l("istio-injection", "enabled"), annos: l(InjectKey, "Off"), reason: "opts out"},
		{name: "any other value opts out", ns: "vms", nsLabels: l("istio-injection", "enabled"), labels: l(InjectKey, "nope"), reason: "opts out"},
		{name: "truthy yes stays in", ns: "vms", nsLabels: l("istio-injection", "enabled"), labels: l(InjectKey, "yes"), in: true},
		{name: "truthy TRUE stays in", ns: "vms", nsLabels: l(RevisionLabel, "canary"), labels: l(InjectKey, "TRUE"), in: true},
		{name: "empty label wins over the annotation: the default", ns: "vms", nsLabels: l("istio-injection", "enabled"), labels: l(InjectKey, ""), annos: l(InjectKey, "false"), in: true},
		{name: "empty label and no annotation: default", ns: "vms", nsLabels: l("istio-injection", "enabled"), labels: l(InjectKey, ""), in: true},
		{name: "object opt-in needs exactly true", ns: "vms", labels: l(InjectKey, "yes"), reason: "exactly sidecar.istio.io/inject=true"},
		{name: "object revision with opt-out value", ns: "vms", labels: l(RevisionLabel, "stable", InjectKey, "off"), reason: "opts out"},
		{name: "enforced: other opt-out values are denied", ns: "vms", nsLabels: l("istio-injection", "enabled", EnforceLabel, "true"), labels: l(InjectKey, "no"), denied: true, reason: "inject=no"},
		{name: "ambient: dataplane-mode=none opts out", ns: "vms", nsLabels: l(DataplaneModeLabel, "ambient"), labels: l(DataplaneModeLabel, "none"), reason: "opts out of it with istio.io/dataplane-mode=none"},
		{name: "ambient: virtmesh's own mutation stays in", ns: "vms", nsLabels: l(DataplaneModeLabel, "ambient"), labels: l(DataplaneModeLabel, "none", InjectKey, "true"), in: true, ambient: true},
		{name: "ambient: inject label yes is not Istio's opt-in", ns: "vms", nsLabels: l(DataplaneModeLabel, "ambient"), labels: l(InjectKey, "yes"), reason: "exactly"},
		{name: "ambient: inject label True is not Istio's opt-in", ns: "vms", nsLabels: l(DataplaneModeLabel, "ambient"), labels: l(InjectKey, "True"), reason: "exactly"},
		{name: "ambient: empty inject label", ns: "vms", nsLabels: l(DataplaneModeLabel, "ambient"), labels: l(InjectKey, ""), reason: "exactly"},
		{name: "ambient: revision label", ns: "vms", nsLabels: l(DataplaneModeLabel, "ambient"), labels: l(RevisionLabel, "canary", DataplaneModeLabel, "none"), in: true, ambient: true},
		{name: "ambient enforced: dataplane none is denied", ns: "vms", nsLabels: l(DataplaneModeLabel, "ambient", EnforceLabel, "true"), labels: l(DataplaneModeLabel, "none"), denied: true, reason: "dataplane-mode=none"},
		{name: "empty namespace revision injects nothing", ns: "vms", nsLabels: l(RevisionLabel, ""), labels: l(InjectKey, "true"), reason: "empty"},
		{name: "empty object revision with inject=true", ns: "vms", labels: l(RevisionLabel, "", InjectKey, "true"), reason: "empty"},
		{name: "object revision wins over inject=true", ns: "vms", labels: l(RevisionLabel, "canary", InjectKey, "true"), in: true, reason: "istio.io/rev=canary"},
		{name: "ambient: empty revision label", ns: "vms", nsLabels: l(DataplaneModeLabel, "ambient"), labels: l(RevisionLabel, ""), reason: "empty"},
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

func TestTruthy(t *testing.T) {
	for v, want := range map[string]bool{"y": true, "Y": true, "yes": true, "YES": true, "true": true, "True": true, "on": true, "ON": true,
		"false": false, "no": false, "off": false, "1": false, "": false, "enabled": false} {
		if Truthy(v) != want {
			t.Errorf("Truthy(%q) = %v, want %v", v, !want, want)
		}
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
