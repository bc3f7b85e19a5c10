package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/injector"
	"github.com/virtmesh/virtmesh/internal/mesh"
)

// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;list;watch
// +kubebuilder:rbac:groups="",namespace=istio-system,resources=configmaps,verbs=get;list;watch

// planSet is what a namespace's meshed VMs need.
type planSet struct {
	// list has one plan per distinct NAD decision.
	list []injector.Decision
	// byRev is the plan of the VMs carrying each istio.io/rev value ("": none).
	byRev map[string]injector.Decision
	// recheck: a plan is held over an unreadable injector until then.
	recheck time.Duration
}

// of is the plan of VMs labelled labels: their revision's, else the
// namespace's.
func (p planSet) of(labels map[string]string) (injector.Decision, bool) {
	if d, ok := p.byRev[labels[mesh.RevisionLabel]]; ok {
		return d, true
	}
	d, ok := p.byRev[""]
	return d, ok
}

// plans are the NADs a namespace's meshed VMs need, as virtmesh decides it:
// one per injector that injects them (VMs may pick a revision of their own
// with istio.io/rev in a namespace without injection labels).
func (r *NADReconciler) plans(ctx context.Context, ns namespaceInfo) (planSet, error) {
	if r.Config.NADMode != NADAuto {
		d := injector.Decision{Kind: injector.PerNamespace, Name: r.Config.NADName, Why: "--cni-nad=per-namespace"}
		return planSet{list: []injector.Decision{d}, byRev: map[string]injector.Decision{"": d}}, nil
	}
	out := planSet{byRev: map[string]injector.Decision{}}
	for _, pod := range r.podLabelSets(ctx, ns) {
		d, err := r.readInjector(ctx, ns, pod)
		if err != nil {
			return planSet{}, err
		}
		d, held := r.holdKnown(ns.name+"/"+pod[mesh.RevisionLabel], d)
		out.recheck = sooner(out.recheck, held)
		if d.Kind == injector.Unknown {
			// Without a readable injector configuration, do what KubeVirt's
			// user guide says (a per-namespace NAD), and say why.
			d = injector.Decision{Kind: injector.PerNamespace, Name: r.Config.NADName,
				Why: "the Istio injector's configuration could not be read (" + d.Why + "), so virtmesh keeps a per-namespace NAD as KubeVirt's guide says"}
		}
		out.byRev[pod[mesh.RevisionLabel]] = d
		if !slices.ContainsFunc(out.list, func(o injector.Decision) bool {
			return o.Kind == d.Kind && o.Namespace == d.Namespace && o.Name == d.Name
		}) {
			out.list = append(out.list, d)
		}
	}
	return out, nil
}

// knownPlan is the last decision read from an injector for a namespace and
// revision, and when it was last confirmed.
type knownPlan struct {
	d  injector.Decision
	at time.Time
}

// holdKnown keeps the last decision read for key while the injector is
// unreadable for less than --nad-cleanup-delay: a Helm reinstall of istiod
// removes its webhook configuration for a moment, and acting on that would
// create a NAD in every mesh namespace only to delete it again. held is how
// long the old decision is still held (0: not held).
func (r *NADReconciler) holdKnown(key string, d injector.Decision) (injector.Decision, time.Duration) {
	now := r.clock()
	if d.Kind != injector.Unknown {
		r.known.Store(key, knownPlan{d: d, at: now})
		return d, 0
	}
	v, ok := r.known.Load(key)
	if !ok {
		return d, 0
	}
	k := v.(knownPlan)
	left := r.Config.NADCleanupDelay - now.Sub(k.at)
	if left <= 0 {
		r.known.Delete(key)
		return d, 0
	}
	held := k.d
	held.Why = fmt.Sprintf("%s (held for up to %s while the injector cannot be read: %s)", k.d.Why, r.Config.NADCleanupDelay, d.Why)
	return held, left
}

// podLabelSets are the labels Istio's webhooks select the namespace's meshed
// launcher pods by: inject=true (as the webhook leaves every meshed VMI), and
// the istio.io/rev a meshed VM or VMI carries, if any. A namespace whose
// labels put VMs in the mesh counts a VM without one, yet to come.
func (r *NADReconciler) podLabelSets(ctx context.Context, ns namespaceInfo) []map[string]string {
	var sets []map[string]string
	seen := map[string]bool{}
	add := func(rev string) {
		if seen[rev] {
			return
		}
		seen[rev] = true
		set := map[string]string{mesh.InjectKey: "true"}
		if rev != "" {
			set[mesh.RevisionLabel] = rev
		}
		sets = append(sets, set)
	}
	if mesh.NamespaceInMesh(ns.name, ns.labels, r.Mesh).InMesh {
		add("")
	}
	var revs []string
	_ = eachWorkload(ctx, r.Client, func(w workload) bool {
		if w.vmiMeta != nil && !w.deleting() && w.meshed(ns, r.Mesh) {
			revs = append(revs, w.vmiMeta.Labels[mesh.RevisionLabel])
		}
		return true
	}, client.InNamespace(ns.name))
	// In a fixed order: the reports name the first plan's injector.
	slices.Sort(revs)
	for _, rev := range revs {
		add(rev)
	}
	return sets
}

// readInjector finds the Istio injector that would inject a pod with these
// labels in the namespace and decides from its ConfigMap.
func (r *NADReconciler) readInjector(ctx context.Context, ns namespaceInfo, pod map[string]string) (injector.Decision, error) {
	mwcs := &admissionregistrationv1.MutatingWebhookConfigurationList{}
	if err := r.Client.List(ctx, mwcs, client.MatchingLabels{injector.WebhookLabel: injector.WebhookLabelValue}); err != nil {
		return injector.Decision{}, err
	}
	if mwc := injector.Select(mwcs.Items, ns.labels, pod); mwc != nil {
		return r.decideFor(ctx, mwc)
	}
	if len(mwcs.Items) > 0 {
		if d, ok := r.maistraNonMember(ctx, mwcs.Items); ok {
			return d, nil
		}
		// Istio is there but injects nothing here (a revision that is not
		// installed, say): the VMs' pods reference no NAD.
		return injector.Decision{Kind: injector.None, Why: fmt.Sprintf("no installed Istio injector injects namespace %q", ns.name)}, nil
	}
	if r.APIReader != nil {
		live := &metav1.PartialObjectMetadataList{}
		live.SetGroupVersionKind(admissionregistrationv1.SchemeGroupVersion.WithKind("MutatingWebhookConfigurationList"))
		if err := r.APIReader.List(ctx, live, client.MatchingLabels{injector.WebhookLabel: injector.WebhookLabelValue}, client.Limit(1)); err == nil && len(live.Items) > 0 {
			return injector.Decision{}, errCacheBehind
		}
	}
	return unknown("no Istio injector (MutatingWebhookConfiguration labelled %s=%s) injects namespace %q",
		injector.WebhookLabel, injector.WebhookLabelValue, ns.name), nil
}

// maistraNonMember: an OpenShift Service Mesh 2 injector, which injects only
// member namespaces, is installed and this namespace is not a member: its
// VMs would get no NAD (nor a proxy) until it joins the ServiceMeshMemberRoll.
func (r *NADReconciler) maistraNonMember(ctx context.Context, mwcs []admissionregistrationv1.MutatingWebhookConfiguration) (injector.Decision, bool) {
	for i := range mwcs {
		for _, w := range mwcs[i].Webhooks {
			if w.NamespaceSelector == nil || !slices.ContainsFunc(w.NamespaceSelector.MatchExpressions,
				func(e metav1.LabelSelectorRequirement) bool { return e.Key == MaistraMemberLabel }) {
				continue
			}
			key, ok := injector.ConfigMapKey(&mwcs[i])
			cm := &corev1.ConfigMap{}
			if !ok || !slices.Contains(r.Config.readableIstioNamespaces(), key.Namespace) || r.Client.Get(ctx, key, cm) != nil {
				continue
			}
			if d := r.decide(cm); d.Kind == injector.Maistra {
				d.Why = fmt.Sprintf("injector %s (ConfigMap %s) injects only namespaces labelled %s", mwcs[i].Name, key, MaistraMemberLabel)
				return d, true
			}
		}
	}
	return injector.Decision{}, false
}

// decide is injector.Decide, remembered per ConfigMap version: evaluating a
// template costs milliseconds, and every namespace asks.
func (r *NADReconciler) decide(cm *corev1.ConfigMap) injector.Decision {
	key := string(cm.UID) + "/" + cm.ResourceVersion
	if d, ok := r.decisions.Load(key); ok {
		return d.(injector.Decision)
	}
	d := injector.Decide(cm.Data["values"], cm.Data["config"])
	r.decisions.Store(key, d)
	return d
}

// sharedTargets are the shared NADs some installed injector makes pods
// reference: virtmesh never deletes one of them, even one it created itself
// (before an upgrade of Istio, say), because other namespaces need it.
func (r *NADReconciler) sharedTargets(ctx context.Context) (map[client.ObjectKey]bool, error) {
	mwcs := &admissionregistrationv1.MutatingWebhookConfigurationList{}
	if err := r.Client.List(ctx, mwcs, client.MatchingLabels{injector.WebhookLabel: injector.WebhookLabelValue}); err != nil {
		return nil, err
	}
	out := map[client.ObjectKey]bool{}
	for i := range mwcs.Items {
		key, ok := injector.ConfigMapKey(&mwcs.Items[i])
		cm := &corev1.ConfigMap{}
		if !ok || !slices.Contains(r.Config.readableIstioNamespaces(), key.Namespace) || r.Client.Get(ctx, key, cm) != nil {
			continue
		}
		if d := r.decide(cm); d.Kind == injector.Shared {
			out[client.ObjectKey{Namespace: d.Namespace, Name: d.Name}] = true
		}
	}
	return out, nil
}

// decideFor reads one injector's ConfigMap and decides.
func (r *NADReconciler) decideFor(ctx context.Context, mwc *admissionregistrationv1.MutatingWebhookConfiguration) (injector.Decision, error) {
	key, ok := injector.ConfigMapKey(mwc)
	switch {
	case !ok:
		return unknown("injector %s calls a URL, not a Service: its ConfigMap is not in this cluster", mwc.Name), nil
	case !slices.Contains(r.Config.readableIstioNamespaces(), key.Namespace):
		return unknown("injector %s's ConfigMap is in namespace %s, which is not in --istio-namespaces or which RBAC "+
			"does not let virtmesh read", mwc.Name, key.Namespace), nil
	}
	cm := &corev1.ConfigMap{}
	if err := r.Client.Get(ctx, key, cm); apierrors.IsNotFound(err) {
		// Istio installs the ConfigMap with the webhook: ask the API
		// server before acting on a cache that may lag behind.
		if r.APIReader != nil && r.APIReader.Get(ctx, key, &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}}) == nil {
			return injector.Decision{}, errCacheBehind
		}
		return unknown("injector %s's ConfigMap %s is missing", mwc.Name, key), nil
	} else if err != nil {
		return injector.Decision{}, err
	}
	d := r.decide(cm)
	d.Why = fmt.Sprintf("injector %s (ConfigMap %s): %s", mwc.Name, key, d.Why)
	return d, nil
}

// errCacheBehind: the API server has an object the cache has not seen yet.
var errCacheBehind = errors.New("the cache is behind the API server")

func unknown(format string, args ...any) injector.Decision {
	return injector.Decision{Kind: injector.Unknown, Why: fmt.Sprintf(format, args...)}
}
