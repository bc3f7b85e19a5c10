package mesh

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

func TestShortLabelValue(t *testing.T) {
	long := strings.Repeat("database-replica-", 6) + "primary" // 109 characters
	other := strings.Repeat("database-replica-", 6) + "standby"
	for _, v := range []string{long, other, strings.Repeat("a", 64), strings.Repeat("a.", 40) + "b", strings.Repeat("x", 253), "a b", "ü-vm", "-x-"} {
		got := ShortLabelValue(v)
		if errs := validation.IsValidLabelValue(got); len(errs) > 0 || len(got) > 63 {
			t.Errorf("%q -> %q is not a valid label value: %v", v, got, errs)
		}
		if got != ShortLabelValue(v) {
			t.Errorf("%q: not stable", v)
		}
	}
	if ShortLabelValue(long) == ShortLabelValue(other) {
		t.Error("two names with the same prefix got the same value")
	}
	if v := strings.Repeat("a", 63); ShortLabelValue(v) != v {
		t.Error("a 63-character value was changed")
	}
}

func TestAppNameOfLongNamesIsAValidLabel(t *testing.T) {
	long := strings.Repeat("long-vm-name-", 10)
	owners := []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: long}}
	app, from := AppName(long, "", nil, owners, nil)
	if len(validation.IsValidLabelValue(app)) > 0 || !strings.Contains(from, "shortened") {
		t.Fatalf("app %q from %q", app, from)
	}
	vm := &kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: long}, Spec: kubevirtv1.VirtualMachineSpec{Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{}}}
	if VMApp(vm) != app {
		t.Fatalf("the controllers' app %q differs from the webhook's %q", VMApp(vm), app)
	}
	for _, gen := range []string{strings.Repeat("g", 80) + "-", "vm--", "db.replica--", "x-.-"} {
		app, _ := AppName("", gen, nil, nil, nil)
		if errs := validation.IsValidLabelValue(app); len(errs) > 0 || app == "" {
			t.Errorf("generateName %q: app %q: %v", gen, app, errs)
		}
	}
}

func TestAppOfAPoolsVMsIsThePool(t *testing.T) {
	poolRef := []metav1.OwnerReference{{APIVersion: "pool.kubevirt.io/v1beta1", Kind: "VirtualMachinePool", Name: "web", Controller: ptrTrue()}}
	vm := &kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: "web-0", OwnerReferences: poolRef},
		Spec: kubevirtv1.VirtualMachineSpec{Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{}}}
	vmiOwners := []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: "web-0", Controller: ptrTrue()}}
	app, from := AppName("web-0", "", nil, vmiOwners, poolRef)
	if app != "web" || !strings.Contains(from, "VirtualMachinePool") || VMApp(vm) != "web" {
		t.Fatalf("webhook %q (%s), controllers %q", app, from, VMApp(vm))
	}
	if app, _ := AppName("web-0", "", nil, vmiOwners, nil); app != "web-0" {
		t.Fatalf("without the VM's owners: %q", app)
	}
}

func ptrTrue() *bool { t := true; return &t }

func TestAppNameOfAnOddOwnerName(t *testing.T) {
	// The API server does not validate owner reference names.
	owners := []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: " "}}
	if app, _ := AppName("", "", nil, owners, nil); app != "" {
		t.Fatalf("app %q from a blank owner name", app)
	}
	owners[0].Name = "my vm"
	if app, _ := AppName("", "", nil, owners, nil); app != "my-vm" {
		t.Fatalf("app %q", app)
	}
}
