package main

import "testing"

func TestSoftMemoryLimit(t *testing.T) {
	for in, want := range map[string]int64{
		"":          0,
		"268435456": 214748364, // what resourceFieldRef gives for 256Mi
		"256Mi":     214748364,
		"1G":        800000000,
	} {
		got, err := softMemoryLimit(in)
		if err != nil || got != want {
			t.Errorf("%q: got %d, %v; want %d", in, got, err, want)
		}
	}
	// "384" and "1": a resourceFieldRef with a divisor (Mi, say) gives the
	// limit in other units than bytes.
	for _, bad := range []string{"lots", "-1Gi", "0", "384", "1", "100m", "31Mi"} {
		if _, err := softMemoryLimit(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}
