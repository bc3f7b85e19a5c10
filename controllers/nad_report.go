package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

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

// foreignNADsFound counts foreign NADs found letting meshed VMs' traffic
// bypass the proxy. The gauge virtmesh_namespaces_foreign_nad falls back
// when such a NAD is deleted, though pods set up with it keep bypassing the
// proxy until they are replaced; the counter keeps that it happened.
var foreignNADsFound = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "virtmesh_foreign_nads_found_total",
	Help: "NetworkAttachmentDefinitions of the istio-cni name, not created by virtmesh, found letting meshed VMs' traffic bypass " +
		"their proxy (another CNI plugin, or istio-cni excluding the namespace); each NAD counted once per virtmesh process.",
})

// nadReports remembers what was last said about each namespace, so a resync
// says nothing again, which namespaces lack the NAD their VMs need, and
// which hold a NAD of a wanted name that is not virtmesh's and runs another
// CNI plugin than istio-cni.
type nadReports struct {
	said    warnings
	mu      sync.Mutex
	missing map[string]bool
	// foreign: namespace -> names of such NADs.
	foreign map[string]map[string]bool
}

// setForeign records whether NAD name in namespace ns, one virtmesh wants
// there, is someone else's running another CNI plugin.
func (n *nadReports) setForeign(ns, name string, foreign bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !foreign {
		delete(n.foreign[ns], name)
		if len(n.foreign[ns]) == 0 {
			delete(n.foreign, ns)
		}
		return
	}
	if n.foreign == nil {
		n.foreign = map[string]map[string]bool{}
	}
	if n.foreign[ns] == nil {
		n.foreign[ns] = map[string]bool{}
	}
	n.foreign[ns][name] = true
}

// keepForeign forgets the foreign NADs of namespace ns whose names virtmesh
// no longer wants there (the namespace left the mesh, or its injector
// changed): meshed VMs no longer get them. Each is reported again should
// the namespace want it again.
func (n *nadReports) keepForeign(ns string, wanted map[string]bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for name := range n.foreign[ns] {
		if !wanted[name] {
			delete(n.foreign[ns], name)
			// Said again should the namespace want it again.
			n.said.set(types.UID("namespace/"+ns), "foreign-nad/"+name, "")
		}
	}
	if len(n.foreign[ns]) == 0 {
		delete(n.foreign, ns)
	}
}

// countForeign is the number of namespaces holding such a NAD
// (virtmesh_namespaces_foreign_nad).
func (n *nadReports) countForeign() float64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return float64(len(n.foreign))
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
	n.keepForeign(ns, nil)
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
func (r *NADReconciler) report(ctx context.Context, ns namespaceInfo, set planSet) error {
	plans := set.list
	uid := types.UID("namespace/" + ns.name)
	var said []string
	for _, p := range plans {
		said = append(said, p.String()+": "+p.Why)
	}
	if r.reports.said.set(uid, "plan", strings.Join(said, "; ")) && len(plans) > 0 {
		log.FromContext(ctx).Info("NetworkAttachmentDefinition plan", "plan", said)
	}
	type problem struct{ reason, msg string }
	problems := map[injector.Decision]problem{}
	var first problem
	for _, plan := range plans {
		why, m, err := r.problem(ctx, ns, plan)
		if err != nil {
			return err
		}
		problems[plan] = problem{why, m}
		if m != "" && first.msg == "" {
			first = problem{why, m}
		}
	}
	r.reports.setMissing(ns.name, first.reason == ReasonSharedNADMissing)
	if r.reports.said.set(uid, "missing", first.msg) && first.msg != "" {
		log.FromContext(ctx).Info("meshed VMs cannot work here as meshed", "reason", first.reason, "message", first.msg)
		r.Recorder.Event(nsRef(ns.name), corev1.EventTypeWarning, first.reason, "virtmesh: "+first.msg)
	}
	// Each VM is told what its own injector does to it, once, also one
	// created after the namespace was.
	return eachWorkload(ctx, r.Client, func(w workload) bool {
		if !w.standalone() || w.deleting() || !w.meshed(ns, r.Mesh) {
			return true
		}
		plan, _ := set.of(w.vmiMeta.Labels)
		p := problems[plan] // the zero plan has none
		ref := eventRef(metav1.OwnerReference{APIVersion: kubevirtv1.SchemeGroupVersion.String(), Kind: w.kind, Name: w.meta.Name, UID: w.meta.UID}, ns.name)
		if r.reports.said.set(w.meta.UID, "nad", p.msg) && p.msg != "" {
			r.Recorder.Event(ref, corev1.EventTypeWarning, p.reason, "virtmesh: "+p.msg)
		}
		var netMsg, netReason string
		switch {
		case !w.jsonNetworks():
		case plan.NetworksBug:
			netReason, netMsg = ReasonIstioNetworksBug, fmt.Sprintf("this VM's pod will not start: it has secondary networks or the passt binding plugin, so KubeVirt writes "+
				"its networks annotation in JSON form, and Istio %s's injector appends to that form wrongly (kubevirt/kubevirt#13927, "+
				"fixed by istio/istio#55000); upgrade Istio to 1.23.6, 1.24.4, 1.25.1 or newer", plan.Version)
		case plan.OverwritesNetworks:
			netReason, netMsg = ReasonIstioNetworksOverwritten, "this VM has secondary networks or the passt binding plugin, but the Istio injector's "+
				"config.injectedAnnotations replaces its pod's "+injector.NetworksAnnotation+" annotation, so those networks are dropped and "+
				"the VM does not start as written; remove "+injector.NetworksAnnotation+" from injectedAnnotations (Istio 1.19+ appends "+
				"default/istio-cni itself with pilot.cni.provider=multus)"
		}
		if r.reports.said.set(w.meta.UID, "networks-bug", netMsg) && netMsg != "" {
			r.Recorder.Event(ref, corev1.EventTypeWarning, netReason, "virtmesh: "+netMsg)
		}
		return true
	}, client.InNamespace(ns.name))
}
