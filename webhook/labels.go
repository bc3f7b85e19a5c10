package webhook

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// ensureTelemetryLabels sets the app and version labels Istio's telemetry and
// Kiali group workloads by, never overwriting an owner's own.
func (m *mutator) ensureTelemetryLabels() {
	if _, ok := m.vmi.Labels[mesh.AppLabel]; !ok {
		var vmOwners []metav1.OwnerReference
		if m.vm != nil {
			vmOwners = m.vm.OwnerReferences
		}
		if app, from := mesh.AppName(m.vmi.Name, m.vmi.GenerateName, m.vmi.Labels, m.vmi.OwnerReferences, vmOwners); app != "" {
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
