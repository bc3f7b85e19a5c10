package injector

import "testing"

func TestVersionOfEveryRealInjector(t *testing.T) {
	for dir, want := range map[string][3]int{"istio-1.18-multus": {1, 18, 7}, "istio-1.22-multus": {1, 22, 8}, "istio-1.30-multus": {1, 30, 3}} {
		cm := readConfigMap(t, dir)
		major, minor, patch, ok := Version(cm.Data["values"])
		if !ok || [3]int{major, minor, patch} != want {
			t.Errorf("%s: %d.%d.%d (%v), want %v", dir, major, minor, patch, ok, want)
		}
	}
	if _, _, _, ok := Version(readConfigMap(t, "maistra-2.5").Data["values"]); ok {
		t.Error("Maistra's tag \"latest\" read as a version")
	}
	if major, minor, patch, ok := Version(`{"global":{"tag":"1.24.2-distroless"}}`); !ok || minor != 24 || patch != 2 || major != 1 {
		t.Error("a distroless tag was not read")
	}
}

func TestJSONNetworksBug(t *testing.T) {
	for v, want := range map[[3]int]bool{
		{1, 18, 7}: false, {1, 19, 0}: true, {1, 22, 8}: true, {1, 23, 5}: true, {1, 23, 6}: false,
		{1, 24, 0}: true, {1, 24, 3}: true, {1, 24, 4}: false, {1, 25, 0}: true, {1, 25, 1}: false, {1, 30, 3}: false,
	} {
		if got := JSONNetworksBug(v[0], v[1], v[2]); got != want {
			t.Errorf("%v: %v, want %v", v, got, want)
		}
	}
}
