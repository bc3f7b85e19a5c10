package controllers

import "testing"

func TestDesiredNAD(t *testing.T) {
	nad := DesiredNAD("vms", "v2-5-istio-cni")
	if nad.Name != "v2-5-istio-cni" || nad.Namespace != "vms" || nad.Spec.Config != "" || !Managed(nad) {
		t.Fatalf("%+v", nad)
	}
}
