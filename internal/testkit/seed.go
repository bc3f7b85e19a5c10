package testkit

import (
	"bytes"
	_ "embed"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Seed004YAML is seed 004's istio-vmi in the webhook's golden input format:
// a Namespace labelled for injection, "---", and the VMI as its owner wrote it.
//
//go:embed seed004.yaml
var Seed004YAML []byte

// Seed004Case is the golden case name of Seed004YAML; its outputs are
// webhook/testdata/<Seed004Case>.mutated.yaml and .warnings.txt.
const Seed004Case = "ns-enabled-seed004-istio-vmi"

// SeedVMName is the name of the VirtualMachine SeedVM builds.
const SeedVMName = "istio-vm"

// SeedVMI is seed 004's istio-vmi in namespace, a fresh copy on every call.
func SeedVMI(namespace string) *kubevirtv1.VirtualMachineInstance {
	vmi, err := decodeSeedVMI()
	if err != nil {
		// seed004.yaml is embedded and tested; it cannot fail at run time.
		panic(err)
	}
	vmi.Namespace = namespace
	return vmi
}

// decodeSeedVMI decodes the VMI document of Seed004YAML, rejecting any field
// the vendored KubeVirt types do not know.
func decodeSeedVMI() (*kubevirtv1.VirtualMachineInstance, error) {
	_, doc, ok := bytes.Cut(Seed004YAML, []byte("\n---\n"))
	if !ok {
		return nil, fmt.Errorf("seed004.yaml: want a Namespace and a VMI separated by ---")
	}
	vmi := &kubevirtv1.VirtualMachineInstance{}
	if err := yaml.UnmarshalStrict(doc, vmi); err != nil {
		return nil, fmt.Errorf("seed004.yaml: VMI: %w", err)
	}
	return vmi, nil
}

// SeedVM is seed 004's istio-vmi as a VirtualMachine named istio-vm in
// namespace, running: its template carries the VMI's labels, annotations and
// spec.
func SeedVM(namespace string) *kubevirtv1.VirtualMachine {
	vmi := SeedVMI(namespace)
	return &kubevirtv1.VirtualMachine{
		TypeMeta:   metav1.TypeMeta{APIVersion: kubevirtv1.SchemeGroupVersion.String(), Kind: "VirtualMachine"},
		ObjectMeta: metav1.ObjectMeta{Name: SeedVMName, Namespace: namespace},
		Spec: kubevirtv1.VirtualMachineSpec{
			RunStrategy: ptr.To(kubevirtv1.RunStrategyAlways),
			Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: vmi.Labels, Annotations: vmi.Annotations},
				Spec:       vmi.Spec,
			},
		},
	}
}

// VMIFor is the VMI virt-controller creates for a running vm: its template,
// named after the VM, labelled kubevirt.io/vm=<name> and controlled by it.
func VMIFor(vm *kubevirtv1.VirtualMachine) *kubevirtv1.VirtualMachineInstance {
	vmi := &kubevirtv1.VirtualMachineInstance{
		TypeMeta:   metav1.TypeMeta{APIVersion: kubevirtv1.SchemeGroupVersion.String(), Kind: "VirtualMachineInstance"},
		ObjectMeta: *vm.Spec.Template.ObjectMeta.DeepCopy(),
		Spec:       *vm.Spec.Template.Spec.DeepCopy(),
	}
	vmi.Name, vmi.Namespace = vm.Name, vm.Namespace
	if vmi.Labels == nil {
		vmi.Labels = map[string]string{}
	}
	vmi.Labels[kubevirtv1.VirtualMachineLabel] = vm.Name
	vmi.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(vm, kubevirtv1.VirtualMachineGroupVersionKind)}
	return vmi
}
