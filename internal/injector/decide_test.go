package injector

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// fixtures (a copy of the team's shared/testdata/istio-injectors): each case's injector ConfigMap
// as helm renders it; the expected NAD is the one its README says the real
// injector wrote into virt-launcher-pod.yaml.
const fixtures = "../../tests/testdata/istio-injectors"

func readConfigMap(t *testing.T, dir string) *corev1.ConfigMap {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtures, dir, "configmap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{}
	if err := yaml.Unmarshal(raw, cm); err != nil {
		t.Fatal(err)
	}
	return cm
}

func TestDecideOnEveryRealInjector(t *testing.T) {
	for dir, want := range map[string]Decision{
		"istio-1.18-multus":               {Kind: PerNamespace, Name: "istio-cni"},
		"istio-1.22-multus":               {Kind: Shared, Namespace: "default", Name: "istio-cni"},
		"istio-1.30-multus":               {Kind: Shared, Namespace: "default", Name: "istio-cni"},
		"istio-1.30-chained":              {Kind: None},
		"istio-1.30-no-cni":               {Kind: None},
		"istio-1.30-multus-rev-canary":    {Kind: Shared, Namespace: "default", Name: "istio-cni"},
		"istio-1.30-injected-annotations": {Kind: PerNamespace, Name: "istio-cni"},
		"maistra-2.5":                     {Kind: Maistra, Name: "v2-5-istio-cni"},
	} {
		t.Run(dir, func(t *testing.T) {
			cm := readConfigMap(t, dir)
			got := Decide(cm.Data["values"], cm.Data["config"])
			if got.Kind != want.Kind || got.Namespace != want.Namespace || got.Name != want.Name {
				t.Fatalf("got %+v, want %s", got, want)
			}
			if got.Why == "" {
				t.Fatal("no reason given")
			}
		})
	}
}

func TestDecideUnreadable(t *testing.T) {
	cm := readConfigMap(t, "istio-1.30-multus")
	for name, tc := range map[string][2]string{
		"values not JSON":  {"{", cm.Data["config"]},
		"config not YAML":  {cm.Data["values"], "templates: ["},
		"no template":      {cm.Data["values"], "policy: enabled\n"},
		"broken condition": {`{"pilot": 7}`, cm.Data["config"]},
	} {
		if got := Decide(tc[0], tc[1]); got.Kind != Unknown || got.Why == "" {
			t.Errorf("%s: got %+v, want Unknown with a reason", name, got)
		}
	}
}

func TestFromNetworks(t *testing.T) {
	for v, want := range map[string]Decision{
		"default/istio-cni":          {Kind: Shared, Namespace: "default", Name: "istio-cni"},
		"istio-cni":                  {Kind: PerNamespace, Name: "istio-cni"},
		" istio-cni@eth9, other":     {Kind: PerNamespace, Name: "istio-cni"},
		"":                           {Kind: None},
		`[{"name":"istio-cni"}]`:     {Kind: Unknown},
		"kube-system/istio-cni@net1": {Kind: Shared, Namespace: "kube-system", Name: "istio-cni"},
	} {
		got := fromNetworks(v, false, "test")
		if got.Kind != want.Kind || got.Namespace != want.Namespace || got.Name != want.Name {
			t.Errorf("%q: got %+v, want %+v", v, got, want)
		}
	}
}

// Values without the keys a template reads: Istio reads them as unset.
func TestDecideMissingValues(t *testing.T) {
	for dir, values := range map[string]string{
		"istio-1.18-multus": `{}`,
		"istio-1.30-multus": `{"pilot": {}}`,
		"maistra-2.5":       `{"istio_cni": {"enabled": true}}`,
	} {
		cm := readConfigMap(t, dir)
		if got := Decide(values, cm.Data["config"]); got.Kind != None {
			t.Errorf("%s with values %s: got %+v, want None", dir, values, got)
		}
	}
}

// Template shapes the real injectors do not have today but a custom or future
// one may: the walker follows them or says it cannot.
func TestDecideTemplateShapes(t *testing.T) {
	const values = `{"pilot": {"cni": {"enabled": true, "provider": "multus"}}}`
	multus := "k8s.v1.cni.cncf.io/networks: '{{ appendMultusNetwork (index .ObjectMeta.Annotations `k8s.v1.cni.cncf.io/networks`) `default/istio-cni` }}'\n"
	sidecar := func(tmpl string) string {
		out, err := yaml.Marshal(map[string]any{"templates": map[string]string{"sidecar": tmpl}})
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	for name, tc := range map[string]struct {
		config string
		want   Kind
	}{
		"one-line if before it": {sidecar("{{ if .Values.x }}a: b{{ end }}\n{{- if .Values.pilot.cni.enabled }}\n" + multus + "{{- end }}\n"), Shared},
		"one-line if, false, before it, and its own condition false": {
			sidecar("{{ if .Values.x }}a{{ end }}\n{{- if .Values.x }}\n" + multus + "{{- end }}\n"), None},
		"with and range closed before it":               {sidecar("{{ with .Values.pilot }}x{{ end }}{{ range $k, $v := .Values }}{{ end }}\n" + multus), Shared},
		"a comment with an if in it":                    {sidecar("{{/* if false */}}\n" + multus), Shared},
		"inside with":                                   {sidecar("{{ with .Values.pilot }}\n" + multus + "{{ end }}\n"), Unknown},
		"inside range":                                  {sidecar("{{ range .Values.nets }}\n" + multus + "{{ end }}\n"), Unknown},
		"in an else branch":                             {sidecar("{{ if .Values.x }}\na: b\n{{ else }}\n" + multus + "{{ end }}\n"), Unknown},
		"after a closed else":                           {sidecar("{{ if .Values.x }}a{{ else }}b{{ end }}\n" + multus), Shared},
		"no Multus line":                                {sidecar("a: b\n"), None},
		"a default template that is missing":            {"defaultTemplates: [custom]\ntemplates:\n  sidecar: x\n", Unknown},
		"Istio before 1.12: one template":               {mustYAML(t, map[string]any{"template": multus}), Shared},
		"two lines set it (a literal, then the append)": {sidecar("k8s.v1.cni.cncf.io/networks: 'x'\n" + multus), Unknown},
		"the pipeline form":                             {sidecar("a: '{{ `x` | appendMultusNetwork `y` }}'\n" + multus), Unknown},
		"a condition on the revision":                   {sidecar("{{- if eq .Revision `canary` }}\n" + multus + "{{- end }}\n"), Unknown},
		"a condition on a variable":                     {sidecar("{{- if $x }}\n" + multus + "{{- end }}\n"), Unknown},
		"a later default template that appends nothing keeps the earlier's": {mustYAML(t, map[string]any{
			"defaultTemplates": []string{"sidecar", "vm"},
			"templates":        map[string]string{"sidecar": multus, "vm": "{{- if .Values.x }}\n" + multus + "{{- end }}\n"}}), Shared},
		"injectedAnnotations naming no NAD": {mustYAML(t, map[string]any{"injectedAnnotations": map[string]string{NetworksAnnotation: "default/"},
			"templates": map[string]string{"sidecar": multus}}), Unknown},
		"custom default template": {mustYAML(t, map[string]any{"defaultTemplates": []string{"sidecar", "vm"},
			"templates": map[string]string{"sidecar": "a: b\n", "vm": multus}}), Shared},
	} {
		if got := Decide(values, tc.config); got.Kind != tc.want || got.Why == "" {
			t.Errorf("%s: got %+v, want %s with a reason", name, got, tc.want)
		}
	}
}

func mustYAML(t *testing.T, v any) string {
	t.Helper()
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// The JSON-networks bug is in appendMultusNetwork: a release in the range
// whose template appends nothing (chained istio-cni) does not have it; an
// injector whose injectedAnnotations replace the annotation drops a VM's
// secondary networks instead.
func TestNetworksBugOnlyWhereTheTemplateAppends(t *testing.T) {
	chained := readConfigMap(t, "istio-1.30-chained")
	values := strings.Replace(chained.Data["values"], `"tag": "1.30.3"`, `"tag": "1.22.8"`, 1)
	if values == chained.Data["values"] {
		t.Fatal("the fixture's tag was not found")
	}
	if d := Decide(values, chained.Data["config"]); d.Kind != None || d.Version != "1.22.8" || d.NetworksBug {
		t.Errorf("chained 1.22.8: got %+v, want None without the bug", d)
	}
	shared := readConfigMap(t, "istio-1.22-multus")
	if d := Decide(shared.Data["values"], shared.Data["config"]); !d.NetworksBug || !d.Appends {
		t.Errorf("multus 1.22: got %+v, want the bug", d)
	}
	injected := readConfigMap(t, "istio-1.30-injected-annotations")
	if d := Decide(injected.Data["values"], injected.Data["config"]); !d.OverwritesNetworks || d.Appends {
		t.Errorf("injectedAnnotations: got %+v, want OverwritesNetworks", d)
	}
}

func TestRef(t *testing.T) {
	for d, want := range map[Decision]string{
		{Kind: Shared, Namespace: "default", Name: "istio-cni"}: "default/istio-cni",
		{Kind: PerNamespace, Name: "istio-cni"}:                 "vms/istio-cni",
		{Kind: Maistra, Name: "v2-5-istio-cni"}:                 "vms/v2-5-istio-cni",
		{Kind: None}:                                            "",
		{Kind: Unknown, Name: "x"}:                              "",
	} {
		if got := d.Ref("vms"); got != want {
			t.Errorf("%+v: got %q, want %q", d, got, want)
		}
	}
}
