package webhook

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// ensureTelemetryLabels sets the app and version labels Istio's telemetry and
// Kiali group workloads by, never overwriting an owner's own.
func (m *mutator) ensureTelemetryLabels() {
	if _, ok := m.vmi.Labels[mesh.AppLabel]; !ok {
		if app, from := appName(m.vmi); app != "" {
			setLabel(m.vmi, mesh.AppLabel, app)
			m.changed(ChangeApp, "set label %s=%q (from %s) for Istio telemetry", mesh.AppLabel, app, from)
		}
	}
	if _, ok := m.vmi.Labels[mesh.VersionLabel]; !ok {
		if v := m.vmi.Labels[mesh.AppVersionLabel]; v != "" {
			setLabel(m.vmi, mesh.VersionLabel, v)
			m.changed(ChangeVersion, "set label %s=%q (from %s) for Istio telemetry", mesh.VersionLabel, v, mesh.AppVersionLabel)
		}
	}
}

// appName picks the app label: app.kubernetes.io/name, else the owning
// VirtualMachine, else the owning replica set or pool, else the VMI's own name.
func appName(vmi *kubevirtv1.VirtualMachineInstance) (name, from string) {
	if v := vmi.Labels[mesh.AppNameLabel]; v != "" {
		return v, mesh.AppNameLabel
	}
	if o := ownerOfKind(vmi.OwnerReferences, "VirtualMachine"); o != "" {
		return o, "VirtualMachine " + quote(o)
	}
	if v := vmi.Labels[mesh.KubeVirtVMNameLabel]; v != "" {
		return v, "VirtualMachine " + quote(v)
	}
	if o := ownerOfKind(vmi.OwnerReferences, "VirtualMachineInstanceReplicaSet"); o != "" {
		return o, "VirtualMachineInstanceReplicaSet " + quote(o)
	}
	if o := ownerOfKind(vmi.OwnerReferences, "VirtualMachinePool"); o != "" {
		return o, "VirtualMachinePool " + quote(o)
	}
	if vmi.Name != "" {
		return vmi.Name, "the VMI's name"
	}
	if g := strings.TrimSuffix(vmi.GenerateName, "-"); g != "" {
		return g, "the VMI's generateName"
	}
	return "", ""
}

func ownerOfKind(refs []metav1.OwnerReference, kind string) string {
	for _, r := range refs {
		if r.Kind == kind && strings.HasSuffix(strings.SplitN(r.APIVersion, "/", 2)[0], "kubevirt.io") {
			return r.Name
		}
	}
	return ""
}

func quote(s string) string { return "\"" + s + "\"" }
