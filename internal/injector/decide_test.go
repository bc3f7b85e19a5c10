package injector

import (
	"os"
	"path/filepath"
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
