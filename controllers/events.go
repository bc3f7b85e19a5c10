package controllers

import (
	"cmp"
	"fmt"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
)

// Event reasons, on the VM or VMI (Services), the NAD (a NAD's creation,
// restore, deletion, keeping, or another plugin under its name) or the
// Namespace (what the namespace's mesh set-up lacks).
const (
	ReasonServiceCreated  = "ServiceCreated"
	ReasonServiceUpdated  = "ServiceUpdated"
	ReasonServiceDeleted  = "ServiceDeleted"
	ReasonServiceConflict = "ServiceConflict"
	ReasonServiceReleased = "ServiceReleased"
	ReasonNoPorts         = "NoPorts"
	ReasonInvalidAppName  = "InvalidAppName"
	ReasonPortProtocol    = "PortProtocol"
	ReasonNADCreated      = "NetworkAttachmentDefinitionCreated"
	ReasonNADRestored     = "NetworkAttachmentDefinitionRestored"
	ReasonNADDeleted      = "NetworkAttachmentDefinitionDeleted"
	// ReasonNADKept: virtmesh's NAD, unneeded by VMs, is kept for another pod that references it.
	ReasonNADKept = "NetworkAttachmentDefinitionKept"
	// ReasonNADNotIstioCNI: a NAD of the name pods reference, not virtmesh's, runs another plugin.
	ReasonNADNotIstioCNI = "NetworkAttachmentDefinitionNotIstioCNI"
	// ReasonSharedNADMissing: the injector references a shared NAD that does not exist.
	ReasonSharedNADMissing = "SharedNetworkAttachmentDefinitionMissing"
	// ReasonIstioNetworksBug: the injector's Istio release cannot start this VM's pod.
	ReasonIstioNetworksBug = "IstioNetworksAnnotationBug"
	// ReasonIstioNetworksOverwritten: the injector's injectedAnnotations replace this VM's networks annotation.
	ReasonIstioNetworksOverwritten = "IstioReplacesNetworksAnnotation"
	// ReasonNotMeshMember: OpenShift Service Mesh 2 makes no NAD in a namespace that is not a member.
	ReasonNotMeshMember = "NotAServiceMeshMember"
)

// notifier records Events about the VMs and VMIs a Service serves. Warnings
// are sent once per problem: a resync repeats none, so at steady state
// virtmesh makes no API writes at all.
type notifier struct {
	recorder record.EventRecorder
	warned   warnings
}

// maxMemberEvents bounds the Events one change of a Service sends: every
// change would otherwise cost a write per VM and VMI of its app, and
// creating an app's N VMs one by one (halted VMs cost their owner nothing)
// N*N/2 writes.
const maxMemberEvents = 10

// eventAll sends a Normal Event to the Service's members, at most
// maxMemberEvents of them (the first by name), saying so.
func (n *notifier) eventAll(members []Member, reason, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if len(members) > maxMemberEvents {
		msg += fmt.Sprintf(" (this Event goes to %d of the %d VMs and VMIs it serves)", maxMemberEvents, len(members))
		members = slices.SortedFunc(slices.Values(members), func(a, b Member) int {
			return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Kind, b.Kind))
		})[:maxMemberEvents]
	}
	for _, m := range members {
		n.recorder.Event(m.ref(), corev1.EventTypeNormal, reason, msg)
	}
}

// warnAll sends a Warning to every member once per distinct message; an empty
// message marks the problem solved, so it is reported again if it comes back.
func (n *notifier) warnAll(members []Member, reason, msg string) {
	for _, m := range members {
		n.warnOnce(m, reason, msg)
	}
}

func (n *notifier) warnOnce(m Member, reason, msg string) {
	if n.warned.set(m.UID, reason, msg) && msg != "" {
		n.recorder.Event(m.ref(), corev1.EventTypeWarning, reason, "virtmesh: "+msg)
	}
}

// warnings remembers the last Warning of each reason sent to each object.
type warnings struct {
	mu   sync.Mutex
	last map[types.UID]map[string]string
}

// set records msg and reports whether it differs from the last one.
func (w *warnings) set(uid types.UID, reason, msg string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		w.last = map[types.UID]map[string]string{}
	}
	if w.last[uid][reason] == msg {
		return false
	}
	if msg == "" {
		delete(w.last[uid], reason)
		if len(w.last[uid]) == 0 {
			delete(w.last, uid)
		}
		return true
	}
	if w.last[uid] == nil {
		w.last[uid] = map[string]string{}
	}
	w.last[uid][reason] = msg
	return true
}

// forget drops what was sent to an object that is gone.
func (w *warnings) forget(uid types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.last, uid)
}
