package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/virtmesh/virtmesh/internal/injector"
)

// MaistraMemberLabel marks a namespace that is a member of an OpenShift
// Service Mesh 2 control plane (Maistra creates its NAD only there).
const MaistraMemberLabel = "maistra.io/member-of"

// nadReports remembers what was last said about each namespace, so a resync
// says nothing again, and which namespaces lack the NAD their VMs need.
type nadReports struct {
	said    warnings
	mu      sync.Mutex
	missing map[string]bool
}

func (n *nadReports) setMissing(ns string, missing bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.missing == nil {
		n.missing = map[string]bool{}
	}
	if missing {
		n.missing[ns] = true
	} else {
		delete(n.missing, ns)
	}
}

// forget drops what was said about a namespace that is gone.
func (n *nadReports) forget(ns string) {
	n.setMissing(ns, false)
	n.said.forget(types.UID("namespace/" + ns))
}

// countMissing is the number of namespaces whose meshed VMs cannot start for
// want of a NAD virtmesh does not create (virtmesh_namespaces_missing_nad).
func (n *nadReports) countMissing() float64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return float64(len(n.missing))
}

// problem says what keeps meshed VMs from working as meshed under one plan
// that virtmesh does not fix itself, or "".
func (r *NADReconciler) problem(ctx context.Context, ns namespaceInfo, plan injector.Decision) (string, string, error) {
	switch {
	case plan.Kind == injector.Shared:
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: plan.Namespace, Name: plan.Name}, &nadv1.NetworkAttachmentDefinition{})
		if client.IgnoreNotFound(err) != nil || err == nil {
			return "", "", client.IgnoreNotFound(err)
		}
		return ReasonSharedNADMissing, fmt.Sprintf("meshed VMs in namespace %q will not start: the Istio injector makes their pods reference the shared "+
			"NetworkAttachmentDefinition %s/%s, which does not exist; install istio-cni with provider multus "+
			"(Istio: --set pilot.cni.provider=multus and the istio-cni chart with cni.provider=multus; OpenShift Service Mesh 3: "+
			"an IstioCNI resource), which creates it (%s)", ns.name, plan.Namespace, plan.Name, plan.Why), nil
	case plan.Kind == injector.Maistra && ns.labels[MaistraMemberLabel] == "":
		return ReasonNotMeshMember, fmt.Sprintf("meshed VMs in namespace %q get no Istio proxy: OpenShift Service Mesh 2 injects only member namespaces "+
			"(and creates its NetworkAttachmentDefinition %q only there), and this one is not a member, so the VMs start outside "+
			"the mesh; add the namespace to the ServiceMeshMemberRoll (%s)", ns.name, plan.Name, plan.Why), nil
	}
	return "", "", nil
}

// report tells the admin (an Event on the namespace, a log line, a metric)
// and the VM owners (an Event on each meshed VM and standalone VMI) what will
// keep meshed VMs from starting that virtmesh does not fix itself. Each is
// said once, and again only when it changes.
func (r *NADReconciler) report(ctx context.Context, ns namespaceInfo, plans []injector.Decision) error {
	uid := types.UID("namespace/" + ns.name)
	var said []string
	for _, p := range plans {
		said = append(said, p.String()+": "+p.Why)
	}
	if r.reports.said.set(uid, "plan", strings.Join(said, "; ")) && len(plans) > 0 {
		log.FromContext(ctx).Info("NetworkAttachmentDefinition plan", "plan", said)
	}
	var reason, msg string
	for _, plan := range plans {
		why, m, err := r.problem(ctx, ns, plan)
		if err != nil {
			return err
		}
		if m != "" && msg == "" {
			reason, msg = why, m
		}
	}
	r.reports.setMissing(ns.name, reason == ReasonSharedNADMissing)
	if r.reports.said.set(uid, "missing", msg) && msg != "" {
		log.FromContext(ctx).Info("meshed VMs cannot work here as meshed", "reason", reason, "message", msg)
		r.Recorder.Event(nsRef(ns.name), corev1.EventTypeWarning, reason, "virtmesh: "+msg)
	}
	bug := networksBug(plans)
	// Each VM is told once, also one created after the namespace was.
	return eachWorkload(ctx, r.Client, func(w workload) bool {
		if !w.standalone() || w.deleting() || !w.meshed(ns, r.Mesh) {
			return true
		}
		ref := eventRef(metav1.OwnerReference{APIVersion: kubevirtv1.SchemeGroupVersion.String(), Kind: w.kind, Name: w.meta.Name, UID: w.meta.UID}, ns.name)
		if r.reports.said.set(w.meta.UID, "nad", msg) && msg != "" {
			r.Recorder.Event(ref, corev1.EventTypeWarning, reason, "virtmesh: "+msg)
		}
		var bugMsg string
		if bug != "" && w.jsonNetworks() {
			bugMsg = fmt.Sprintf("this VM's pod will not start: it has secondary networks or the passt binding plugin, so KubeVirt writes "+
				"its networks annotation in JSON form, and Istio %s's injector appends to that form wrongly (kubevirt/kubevirt#13927, "+
				"fixed by istio/istio#55000); upgrade Istio to 1.23.6, 1.24.4, 1.25.1 or newer", bug)
		}
		if r.reports.said.set(w.meta.UID, "networks-bug", bugMsg) && bugMsg != "" {
			r.Recorder.Event(ref, corev1.EventTypeWarning, ReasonIstioNetworksBug, "virtmesh: "+bugMsg)
		}
		return true
	}, client.InNamespace(ns.name))
}

// networksBug is the version of an injector in plans that cannot start pods
// with a JSON-form networks annotation, or "".
func networksBug(plans []injector.Decision) string {
	for _, p := range plans {
		if p.NetworksBug {
			return p.Version
		}
	}
	return ""
}
