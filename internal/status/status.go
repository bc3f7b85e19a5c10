// Package status answers "is my VM in the mesh, and if not, why?" for
// kubectl virtmesh: it reads VMs, VMIs, their launcher pods, namespaces,
// Services and NADs with the user's own (read-only) rights and computes each
// one's state with mesh.StateOf, the function the controllers use.
package status

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// NewScheme holds the types kubectl virtmesh reads.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(kubevirtv1.AddToScheme(s))
	utilruntime.Must(nadv1.AddToScheme(s))
	return s
}

// Row is one VM (or standalone VMI) and where it stands.
type Row struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Kind is VirtualMachine or VirtualMachineInstance (standalone).
	Kind     string     `json:"kind"`
	State    mesh.State `json:"state"`
	Proxy    string     `json:"proxy,omitempty"`
	Reason   string     `json:"reason"`
	NextStep string     `json:"nextStep,omitempty"`
	// Service is the Service of the VM's app ("-": none).
	Service string `json:"service,omitempty"`
	// NAD is the istio-cni NetworkAttachmentDefinition its pod references
	// ("-": none; a "(missing)" suffix when it does not exist; "?" when it
	// cannot be read).
	NAD  string `json:"nad,omitempty"`
	Pod  string `json:"pod,omitempty"`
	Node string `json:"node,omitempty"`
}

// Query says what to list.
type Query struct {
	// Namespace to list; "" with AllNamespaces lists every namespace.
	Namespace     string
	AllNamespaces bool
	// Names of VMs or VMIs to show; empty shows all.
	Names  []string
	Config mesh.Config
}

// ForbiddenError says which read the user's rights refuse.
type ForbiddenError struct {
	What string
	Err  error
}

func (e *ForbiddenError) Error() string {
	return fmt.Sprintf("you may not %s (%v); kubectl virtmesh needs read access to VirtualMachines, VirtualMachineInstances, "+
		"Pods, Services and Namespaces (the view ClusterRole with KubeVirt's kubevirt.io:view gives it)", e.What, apierrors.ReasonForError(e.Err))
}

func (e *ForbiddenError) Unwrap() error { return e.Err }

func read(what string, err error) error {
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		return &ForbiddenError{What: what, Err: err}
	}
	if meta.IsNoMatchError(err) {
		return fmt.Errorf("cannot %s: is KubeVirt installed? (%w)", what, err)
	}
	if err != nil {
		return fmt.Errorf("cannot %s: %w", what, err)
	}
	return nil
}

// Collect reads the cluster and returns a row per VM and standalone VMI,
// sorted by namespace and name. A name in q.Names that matches nothing is an
// error.
func Collect(ctx context.Context, c client.Reader, q Query) ([]Row, error) {
	var opts []client.ListOption
	where := "in namespace " + q.Namespace
	if !q.AllNamespaces {
		opts = append(opts, client.InNamespace(q.Namespace))
	} else {
		where = "in all namespaces"
	}
	// The lists are independent: asked for at once, the API server answers
	// them side by side. An error is reported in this order, whichever
	// came first.
	vms := &kubevirtv1.VirtualMachineList{}
	vmis := &kubevirtv1.VirtualMachineInstanceList{}
	pods := &corev1.PodList{}
	svcs := &metav1.PartialObjectMetadataList{} // names only
	svcs.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ServiceList"))
	nsList := &metav1.PartialObjectMetadataList{} // labels only
	nsList.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
	nadList := &metav1.PartialObjectMetadataList{}
	nadList.SetGroupVersionKind(nadv1.SchemeGroupVersion.WithKind("NetworkAttachmentDefinitionList"))
	lists := []struct {
		what string
		run  func() error
	}{
		{what: "list VirtualMachines " + where, run: func() error { return c.List(ctx, vms, opts...) }},
		{what: "list VirtualMachineInstances " + where, run: func() error { return c.List(ctx, vmis, opts...) }},
		{what: "list Pods " + where, run: func() error {
			return c.List(ctx, pods, append(slices.Clip(opts), client.MatchingLabels{"kubevirt.io": "virt-launcher"})...)
		}},
		{what: "list Services " + where, run: func() error { return c.List(ctx, svcs, opts...) }},
		{what: "list namespaces", run: func() error {
			if !q.AllNamespaces {
				return nil // the one namespace is read when a row needs it
			}
			return c.List(ctx, nsList)
		}},
	}
	errs := make([]error, len(lists))
	var nadErr error
	var wg sync.WaitGroup
	for i := range lists {
		wg.Go(func() { errs[i] = lists[i].run() })
	}
	// NADs in one list where the user may list them (else, or for a NAD in
	// another namespace, one read each): an error only leaves it unused.
	wg.Go(func() { nadErr = c.List(ctx, nadList, opts...) })
	wg.Wait()
	for i, l := range lists {
		if err := read(l.what, errs[i]); err != nil {
			return nil, err
		}
	}
	podsOf := map[string][]*corev1.Pod{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if uid := p.Labels["kubevirt.io/created-by"]; uid != "" {
			podsOf[uid] = append(podsOf[uid], p)
		}
	}
	g := &gatherer{c: c, q: q, namespaces: map[string]map[string]string{}, services: map[string]bool{}, nads: map[string]string{}}
	for i := range svcs.Items {
		g.services[svcs.Items[i].Namespace+"/"+svcs.Items[i].Name] = true
	}
	for i := range nsList.Items {
		g.namespaces[nsList.Items[i].Name] = nsList.Items[i].Labels
	}
	if nadErr == nil {
		g.nadsListed = true
		for i := range nadList.Items {
			g.nads[nadList.Items[i].Namespace+"/"+nadList.Items[i].Name] = ""
		}
	}

	vmiOf := map[string]*kubevirtv1.VirtualMachineInstance{}
	for i := range vmis.Items {
		vmiOf[vmis.Items[i].Namespace+"/"+vmis.Items[i].Name] = &vmis.Items[i]
	}
	var rows []Row
	for i := range vms.Items {
		vm := &vms.Items[i]
		if !wanted(q.Names, vm.Name) {
			continue
		}
		vmi := vmiOf[vm.Namespace+"/"+vm.Name]
		if vmi != nil && !metav1.IsControlledBy(vmi, vm) {
			vmi = nil
		}
		row, err := g.row(ctx, vm.Namespace, vm.Name, "VirtualMachine", mesh.VMApp(vm), vmi, podsOf)
		if err != nil {
			return nil, err
		}
		if vmi == nil && vm.Status.PrintableStatus != "" && vm.Status.PrintableStatus != kubevirtv1.VirtualMachineStatusStopped {
			row.Reason = fmt.Sprintf("the VM is not running (%s)", vm.Status.PrintableStatus)
		}
		rows = append(rows, row)
	}
	for i := range vmis.Items {
		vmi := &vmis.Items[i]
		if mesh.OwnedByVM(&vmi.ObjectMeta) || !wanted(q.Names, vmi.Name) {
			continue
		}
		row, err := g.row(ctx, vmi.Namespace, vmi.Name, "VirtualMachineInstance", mesh.VMIApp(&vmi.ObjectMeta), vmi, podsOf)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Namespace != rows[j].Namespace {
			return rows[i].Namespace < rows[j].Namespace
		}
		if rows[i].Name != rows[j].Name {
			return rows[i].Name < rows[j].Name
		}
		return rows[i].Kind > rows[j].Kind // VM before a standalone VMI of the same name
	})
	var missing []string
	for _, n := range q.Names {
		if !slices.ContainsFunc(rows, func(r Row) bool { return r.Name == n }) {
			missing = append(missing, strconv.Quote(n))
		}
	}
	if len(missing) > 0 {
		return rows, &NotFoundError{fmt.Sprintf("no VirtualMachine or VirtualMachineInstance %s %s", strings.Join(missing, ", "), where)}
	}
	if len(rows) == 0 && !q.AllNamespaces {
		// Nothing here: say so if "here" does not exist (a typo), as
		// kubectl does not. A namespace the user may not read stays silent.
		ns := &metav1.PartialObjectMetadata{}
		ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
		if err := c.Get(ctx, client.ObjectKey{Name: q.Namespace}, ns); apierrors.IsNotFound(err) {
			return nil, &NotFoundError{fmt.Sprintf("namespace %q not found", q.Namespace)}
		}
	}
	return rows, nil
}

// NotFoundError says that a VM or VMI asked for by name, or the namespace, does not
// exist. Collect returns it with the rows it found.
type NotFoundError struct{ msg string }

func (e *NotFoundError) Error() string { return e.msg }

func wanted(names []string, name string) bool {
	return len(names) == 0 || slices.Contains(names, name)
}

// gatherer reads (once each) what rows need besides VMs, VMIs and pods.
type gatherer struct {
	c          client.Reader
	q          Query
	namespaces map[string]map[string]string
	services   map[string]bool   // namespace/name of every Service listed
	nads       map[string]string // namespace/name → "", "missing" or "?"
	// nadsListed: nads holds every NAD in the query's namespace (or all).
	nadsListed bool
}

func (g *gatherer) row(ctx context.Context, ns, name, kind, app string, vmi *kubevirtv1.VirtualMachineInstance,
	podsOf map[string][]*corev1.Pod) (Row, error) {
	row := Row{Namespace: ns, Name: name, Kind: kind, Service: "-", NAD: "-"}
	if app != "" && g.services[ns+"/"+app] {
		row.Service = app
	}
	if vmi == nil {
		row.State, row.Proxy, row.Reason = mesh.Stopped, "-", "the VM is not running"
		return row, nil
	}
	labels, err := g.namespace(ctx, ns)
	if err != nil {
		return row, err
	}
	in := mesh.StateInput{VMI: vmi, NamespaceLabels: labels, Pod: mesh.ActivePod(vmi, podsOf[string(vmi.UID)]), Config: g.q.Config}
	in.Others = mesh.OtherPods(in.Pod, podsOf[string(vmi.UID)])
	if in.Pod != nil {
		row.Pod, row.Node = in.Pod.Name, in.Pod.Spec.NodeName
		var nads []string
		for _, ref := range mesh.PodNetworks(in.Pod) {
			istio := !isSecondary(vmi, ref)
			// Any NAD keeps a pod from starting; the column shows Istio's.
			if !istio && in.Pod.Status.Phase != corev1.PodPending {
				continue
			}
			state := g.nad(ctx, ref)
			if state == "missing" && in.MissingNAD == "" && in.Pod.Status.Phase == corev1.PodPending {
				in.MissingNAD = ref
			}
			if istio {
				nads = append(nads, ref+suffix(state))
			}
		}
		if len(nads) > 0 {
			row.NAD = strings.Join(nads, ",")
		}
	}
	st := mesh.StateOf(in)
	row.State, row.Proxy, row.Reason, row.NextStep = st.State, st.Proxy, st.Reason, st.NextStep
	return row, nil
}

// isSecondary: ref is one of the VMI's own Multus networks (its pod cannot
// start without them either).
func isSecondary(vmi *kubevirtv1.VirtualMachineInstance, ref string) bool {
	for _, n := range vmi.Spec.Networks {
		if n.Multus == nil {
			continue
		}
		name := n.Multus.NetworkName
		if !strings.Contains(name, "/") {
			name = vmi.Namespace + "/" + name
		}
		if name == ref {
			return true
		}
	}
	return false
}

func suffix(state string) string {
	switch state {
	case "missing":
		return " (missing)"
	case "?":
		return " (?)"
	}
	return ""
}

func (g *gatherer) namespace(ctx context.Context, name string) (map[string]string, error) {
	if l, ok := g.namespaces[name]; ok {
		return l, nil
	}
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := read("get namespace "+name, g.c.Get(ctx, client.ObjectKey{Name: name}, ns)); err != nil {
		return nil, err
	}
	g.namespaces[name] = ns.Labels
	return ns.Labels, nil
}

// nad returns "" (exists), "missing" or "?" (cannot be read: no rights, or
// no NAD CRD).
func (g *gatherer) nad(ctx context.Context, ref string) string {
	if v, ok := g.nads[ref]; ok {
		return v
	}
	ns, name, _ := strings.Cut(ref, "/")
	if g.nadsListed && (g.q.AllNamespaces || ns == g.q.Namespace) {
		g.nads[ref] = "missing" // listed, and not there
		return g.nads[ref]
	}
	err := g.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &nadv1.NetworkAttachmentDefinition{})
	switch {
	case err == nil:
		g.nads[ref] = ""
	case apierrors.IsNotFound(err):
		g.nads[ref] = "missing"
	default:
		g.nads[ref] = "?"
	}
	return g.nads[ref]
}

// Trouble reports whether any row needs its owner to act (Broken or
// NeedsRestart): kubectl virtmesh status then exits non-zero.
func Trouble(rows []Row) bool {
	return slices.ContainsFunc(rows, func(r Row) bool { return r.State.Trouble() })
}
