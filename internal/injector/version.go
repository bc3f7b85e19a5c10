package injector

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Version is the Istio release an injector's values name (global.tag, such
// as "1.24.2" or "1.24.2-distroless"), and whether one could be read.
func Version(values string) (major, minor, patch int, ok bool) {
	var v struct {
		Global struct {
			Tag any `json:"tag"`
		} `json:"global"`
	}
	if json.Unmarshal([]byte(values), &v) != nil {
		return 0, 0, 0, false
	}
	tag, _ := v.Global.Tag.(string)
	tag, _, _ = strings.Cut(strings.TrimPrefix(tag, "v"), "-")
	parts := strings.Split(tag, ".")
	if len(parts) != 3 {
		return 0, 0, 0, false
	}
	var n [3]int
	for i, p := range parts {
		x, err := strconv.Atoi(p)
		if err != nil {
			return 0, 0, 0, false
		}
		n[i] = x
	}
	return n[0], n[1], n[2], true
}

// JSONNetworksBug reports the Istio releases whose injector appends wrongly
// to a networks annotation in JSON form (a VM with secondary networks, or the
// passt binding plugin): 1.19.0-1.23.5, 1.24.0-1.24.3 and 1.25.0, fixed by
// istio/istio#55000. Such a VM's pod cannot start, whatever NADs exist
// (kubevirt/kubevirt#13927).
func JSONNetworksBug(major, minor, patch int) bool {
	if major != 1 {
		return false
	}
	switch {
	case minor >= 19 && minor <= 22:
		return true
	case minor == 23:
		return patch <= 5
	case minor == 24:
		return patch <= 3
	case minor == 25:
		return patch == 0
	}
	return false
}
