package controllers

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// Member is a VM or standalone VMI a Service serves.
type Member struct {
	// APIVersion is kubevirt.io/v1 when empty; a VirtualMachinePool's is its own.
	APIVersion string
	Kind       string // "VirtualMachine", "VirtualMachineInstance", "VirtualMachineInstanceReplicaSet" or "VirtualMachinePool"
	Namespace  string
	Name       string
	UID        types.UID
	// Ports are the ports declared on its pod-network interface.
	Ports []kubevirtv1.Port
	// Annotations are its own (for a VM, its template's merged over the VM's).
	Annotations map[string]string
}

func (m Member) String() string { return m.Kind + " " + strconv.Quote(m.Name) }

// Problem is something wrong with a member's declarations, for a Warning
// event on that member.
type Problem struct {
	Member  Member
	Reason  string
	Message string
}

// Istio's protocol selection by port name prefix (<protocol>[-<suffix>]) and
// appProtocol. https://istio.io/latest/docs/ops/configuration/traffic-management/protocol-selection/
var istioProtocols = map[string]bool{
	"http": true, "http2": true, "https": true, "grpc": true, "grpc-web": true,
	"tcp": true, "tls": true, "mongo": true, "mysql": true, "redis": true, "udp": true,
}

// ValidServiceName reports why app cannot name a Service, or "".
func ValidServiceName(app string) string {
	if errs := validation.IsDNS1035Label(app); len(errs) > 0 {
		return strings.Join(errs, "; ")
	}
	return ""
}

type servicePort struct {
	port     int32
	protocol corev1.Protocol
	name     string // the owner's, may be empty
	app      string // Istio protocol, may be empty
	from     Member
}

// DesiredService is the Service for app in namespace serving members, and the
// problems found in their declarations. It returns nil when no member declares
// a port. Members may come in any order; the result does not depend on it.
func DesiredService(namespace, app string, members []Member) (*corev1.Service, []Problem) {
	members = slices.Clone(members)
	slices.SortFunc(members, func(a, b Member) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
	ports, problems := collectPorts(members)
	if len(ports) == 0 {
		return nil, problems
	}
	svc := &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{
			Name: app, Namespace: namespace,
			Labels: map[string]string{mesh.ManagedByLabel: mesh.ManagedByValue},
		},
		Spec: corev1.ServiceSpec{Selector: map[string]string{mesh.AppLabel: app}},
	}
	used := map[string]bool{}
	for _, p := range ports {
		sp := corev1.ServicePort{Name: portName(p, used), Port: p.port, Protocol: p.protocol, TargetPort: intstr.FromInt32(p.port)}
		if p.app != "" {
			sp.AppProtocol = &p.app
		}
		svc.Spec.Ports = append(svc.Spec.Ports, sp)
	}
	for _, m := range members {
		svc.OwnerReferences = append(svc.OwnerReferences, metav1.OwnerReference{
			APIVersion: m.apiVersion(), Kind: m.Kind, Name: m.Name, UID: m.UID})
	}
	return svc, problems
}

// collectPorts is the union of the members' ports, one per port and
// protocol, sorted; members come sorted, so the first declaration wins.
func collectPorts(members []Member) ([]*servicePort, []Problem) {
	type key struct {
		port     int32
		protocol corev1.Protocol
	}
	var problems []Problem
	ports := map[key]*servicePort{}
	for _, m := range members {
		explicit, errs := parsePortProtocols(m.Annotations[mesh.PortProtocolsAnnotation])
		for _, e := range errs {
			problems = append(problems, Problem{Member: m, Reason: ReasonPortProtocol, Message: e})
		}
		for _, p := range m.Ports {
			sp, problem := newServicePort(m, p, explicit)
			if sp == nil {
				problems = append(problems, problem)
				continue
			}
			if sp.port == mesh.SSHPort {
				problems = append(problems, Problem{Member: m, Reason: ReasonPortProtocol, Message: "port 22 is in the Service, but KubeVirt " +
					"never sends SSH through Istio's proxy: no mTLS, AuthorizationPolicy or telemetry applies to it"})
			}
			k := key{sp.port, sp.protocol}
			prev, ok := ports[k]
			switch {
			case !ok, prev.app == "" && sp.app != "":
				ports[k] = sp
			case sp.app != "" && sp.app != prev.app:
				problems = append(problems, Problem{Member: m, Reason: ReasonPortProtocol, Message: fmt.Sprintf(
					"port %d is declared %s here but %s by %s; the Service uses %s", p.Port, sp.app, prev.app, prev.from, prev.app)})
			}
		}
	}
	list := make([]*servicePort, 0, len(ports))
	for _, p := range ports {
		list = append(list, p)
	}
	slices.SortFunc(list, func(a, b *servicePort) int {
		return cmp.Or(cmp.Compare(a.port, b.port), cmp.Compare(a.protocol, b.protocol))
	})
	return list, problems
}

// newServicePort reads one declared port, or says why it cannot be served.
func newServicePort(m Member, p kubevirtv1.Port, explicit map[int32]string) (*servicePort, Problem) {
	protocol := corev1.Protocol(strings.ToUpper(p.Protocol))
	if protocol == "" {
		protocol = corev1.ProtocolTCP
	}
	if protocol != corev1.ProtocolTCP && protocol != corev1.ProtocolUDP {
		return nil, Problem{Member: m, Reason: ReasonPortProtocol,
			Message: fmt.Sprintf("port %d has protocol %q; a Service port here can only be TCP or UDP, so it is left out", p.Port, p.Protocol)}
	}
	if mesh.IstioReservedPort(p.Port) {
		return nil, Problem{Member: m, Reason: ReasonPortProtocol, Message: fmt.Sprintf(
			"port %d is reserved by Istio's proxy in the VM's pod, so it is left out of the Service; serve on another port", p.Port)}
	}
	sp := &servicePort{port: p.Port, protocol: protocol, name: strings.ToLower(p.Name), from: m}
	if a, ok := explicit[p.Port]; ok {
		sp.app = a
	} else {
		sp.app = protocolOfName(sp.name)
	}
	if protocol == corev1.ProtocolUDP {
		sp.app = "" // Istio does not proxy UDP; nothing to select
	}
	return sp, Problem{}
}

// portName keeps Istio's protocol selection: a port with a protocol gets a
// name with that prefix (the owner's, if it has it), one without a name that
// Istio cannot read as a protocol, so auto-detection stays on.
func portName(p *servicePort, used map[string]bool) string {
	var candidates []string
	switch {
	case p.app != "" && protocolOfName(p.name) == p.app && validPortName(p.name):
		candidates = append(candidates, p.name)
	case p.app == "" && p.name != "" && protocolOfName(p.name) == "" && validPortName(p.name):
		candidates = append(candidates, p.name)
	}
	prefix := p.app
	switch {
	case prefix == "" && p.protocol == corev1.ProtocolUDP:
		prefix = "udp"
	case prefix == "":
		prefix = "port"
	}
	candidates = append(candidates,
		fmt.Sprintf("%s-%d", prefix, p.port),
		fmt.Sprintf("%s-%d-%s", prefix, p.port, strings.ToLower(string(p.protocol))))
	for _, c := range candidates {
		if !used[c] {
			used[c] = true
			return c
		}
	}
	// Owners' own names took both: count up until a name is free (these stay
	// far below the 63 characters a port name may have).
	for i := 2; ; i++ {
		if c := fmt.Sprintf("%s-%d", candidates[len(candidates)-1], i); !used[c] {
			used[c] = true
			return c
		}
	}
}

func validPortName(n string) bool { return len(validation.IsDNS1123Label(n)) == 0 }

// protocolOfName is Istio's reading of a port name: the part before the first
// dash, if it names a protocol ("grpc-web" counts whole).
func protocolOfName(name string) string {
	if strings.HasPrefix(name, "grpc-web") {
		return "grpc-web"
	}
	p, _, _ := strings.Cut(name, "-")
	if istioProtocols[p] {
		return p
	}
	return ""
}

// parsePortProtocols reads "8080=http,9090=grpc".
func parsePortProtocols(v string) (map[int32]string, []string) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	out := map[int32]string{}
	var errs []string
	for _, entry := range strings.Split(v, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		ps, proto, ok := strings.Cut(entry, "=")
		port, err := strconv.ParseInt(strings.TrimSpace(ps), 10, 32)
		proto = strings.ToLower(strings.TrimSpace(proto))
		switch {
		case !ok || err != nil || port < 1 || port > 65535:
			errs = append(errs, fmt.Sprintf("%s: entry %q is not <port>=<protocol>, e.g. 8080=http; it is ignored", mesh.PortProtocolsAnnotation, entry))
		case !istioProtocols[proto]:
			errs = append(errs, fmt.Sprintf("%s: %q is not a protocol Istio knows (%s); port %d keeps Istio's auto-detection",
				mesh.PortProtocolsAnnotation, proto, knownProtocols(), port))
		default:
			out[int32(port)] = proto
		}
	}
	return out, errs
}

func knownProtocols() string {
	var l []string
	for p := range istioProtocols {
		l = append(l, p)
	}
	slices.Sort(l)
	return strings.Join(l, ", ")
}

// describe says what a Service selects and serves, for Events.
func describe(svc *corev1.Service) string {
	var ports []string
	for _, p := range svc.Spec.Ports {
		ports = append(ports, fmt.Sprintf("%s %d/%s", p.Name, p.Port, p.Protocol))
	}
	return fmt.Sprintf("selector %s=%s, ports %s", mesh.AppLabel, svc.Spec.Selector[mesh.AppLabel], strings.Join(ports, ", "))
}

func isMemberKind(o metav1.OwnerReference) bool {
	if o.Kind == "VirtualMachinePool" {
		return strings.HasPrefix(o.APIVersion, "pool.kubevirt.io/")
	}
	return o.APIVersion == kubevirtv1.SchemeGroupVersion.String() &&
		(o.Kind == "VirtualMachine" || o.Kind == "VirtualMachineInstance" || o.Kind == "VirtualMachineInstanceReplicaSet")
}

func (m Member) ref() *corev1.ObjectReference {
	return &corev1.ObjectReference{APIVersion: m.apiVersion(), Kind: m.Kind, Name: m.Name, Namespace: m.Namespace, UID: m.UID}
}

func (m Member) apiVersion() string {
	if m.APIVersion != "" {
		return m.APIVersion
	}
	return kubevirtv1.SchemeGroupVersion.String()
}
