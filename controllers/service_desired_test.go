package controllers

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

func vm(name string, ports ...kubevirtv1.Port) Member {
	return Member{Kind: "VirtualMachine", Namespace: "vms", Name: name, UID: types.UID("uid-" + name), Ports: ports}
}

func port(name string, p int32, proto string) kubevirtv1.Port {
	return kubevirtv1.Port{Name: name, Port: p, Protocol: proto}
}

type wantPort struct {
	name     string
	port     int32
	protocol corev1.Protocol
	app      string
}

func TestDesiredServicePorts(t *testing.T) {
	cases := []struct {
		name     string
		members  []Member
		want     []wantPort
		problems []string
	}{
		{name: "no ports, no Service", members: []Member{vm("a")}},
		{name: "named http port keeps its name and gets appProtocol",
			members: []Member{vm("a", port("http", 8080, ""))},
			want:    []wantPort{{"http", 8080, corev1.ProtocolTCP, "http"}}},
		{name: "suffixed name keeps it", members: []Member{vm("a", port("grpc-api", 9090, "TCP"))},
			want: []wantPort{{"grpc-api", 9090, corev1.ProtocolTCP, "grpc"}}},
		{name: "grpc-web is one protocol", members: []Member{vm("a", port("grpc-web", 9091, ""))},
			want: []wantPort{{"grpc-web", 9091, corev1.ProtocolTCP, "grpc-web"}}},
		{name: "unnamed port leaves auto-detection on", members: []Member{vm("a", port("", 8080, ""))},
			want: []wantPort{{"port-8080", 8080, corev1.ProtocolTCP, ""}}},
		{name: "name without a protocol is kept, auto-detection on", members: []Member{vm("a", port("web", 8080, ""))},
			want: []wantPort{{"web", 8080, corev1.ProtocolTCP, ""}}},
		{name: "upper-case name is read as Istio does", members: []Member{vm("a", port("HTTP", 80, ""))},
			want: []wantPort{{"http", 80, corev1.ProtocolTCP, "http"}}},
		{name: "UDP kept, no appProtocol", members: []Member{vm("a", port("dns", 53, "UDP"), port("", 53, "TCP"))},
			want: []wantPort{{"port-53", 53, corev1.ProtocolTCP, ""}, {"dns", 53, corev1.ProtocolUDP, ""}}},
		{name: "unnamed UDP", members: []Member{vm("a", port("", 5000, "udp"))},
			want: []wantPort{{"udp-5000", 5000, corev1.ProtocolUDP, ""}}},
		{name: "SCTP is refused", members: []Member{vm("a", port("", 8080, "TCP"), port("", 9999, "SCTP"))},
			want: []wantPort{{"port-8080", 8080, corev1.ProtocolTCP, ""}}, problems: []string{`protocol "SCTP"`}},
		{name: "union of two VMs, sorted by port",
			members: []Member{vm("v2", port("http", 8080, ""), port("grpc", 9090, "")), vm("v1", port("http", 8080, ""))},
			want:    []wantPort{{"http", 8080, corev1.ProtocolTCP, "http"}, {"grpc", 9090, corev1.ProtocolTCP, "grpc"}}},
		{name: "explicit protocol wins over none",
			members: []Member{vm("a", port("", 8080, "")), vm("b", port("http-web", 8080, ""))},
			want:    []wantPort{{"http-web", 8080, corev1.ProtocolTCP, "http"}}},
		{name: "conflicting protocols: first VM by name wins, the other is told",
			members:  []Member{vm("b", port("grpc", 8080, "")), vm("a", port("http", 8080, ""))},
			want:     []wantPort{{"http", 8080, corev1.ProtocolTCP, "http"}},
			problems: []string{`port 8080 is declared grpc here but http by VirtualMachine "a"`}},
		{name: "duplicate owner names are made unique",
			members: []Member{vm("a", port("http", 8080, "")), vm("b", port("http", 8081, ""))},
			want:    []wantPort{{"http", 8080, corev1.ProtocolTCP, "http"}, {"http-8081", 8081, corev1.ProtocolTCP, "http"}}},
		{name: "owners' names that take the generated ones",
			members: []Member{vm("a", port("port-81-tcp", 79, ""), port("port-81", 80, ""), port("", 81, ""))},
			want: []wantPort{{"port-81-tcp", 79, corev1.ProtocolTCP, ""}, {"port-81", 80, corev1.ProtocolTCP, ""},
				{"port-81-tcp-2", 81, corev1.ProtocolTCP, ""}}},
		{name: "annotation gives the protocol",
			members: []Member{{Kind: "VirtualMachineInstance", Name: "x", UID: "x", Ports: []kubevirtv1.Port{port("", 8080, ""), port("api", 9000, "")},
				Annotations: map[string]string{mesh.PortProtocolsAnnotation: "8080=http, 9000=grpc"}}},
			want: []wantPort{{"http-8080", 8080, corev1.ProtocolTCP, "http"}, {"grpc-9000", 9000, corev1.ProtocolTCP, "grpc"}}},
		{name: "bad annotation entries are reported and ignored",
			members: []Member{{Kind: "VirtualMachineInstance", Name: "x", UID: "x", Ports: []kubevirtv1.Port{port("", 8080, "")},
				Annotations: map[string]string{mesh.PortProtocolsAnnotation: "8080=soap,http,99999=http"}}},
			want:     []wantPort{{"port-8080", 8080, corev1.ProtocolTCP, ""}},
			problems: []string{`"soap" is not a protocol Istio knows`, `entry "http" is not <port>=<protocol>`, `entry "99999=http"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svc, problems := DesiredService("vms", "web", tc.members)
			if len(problems) != len(tc.problems) {
				t.Fatalf("problems: want %d (%q), got %+v", len(tc.problems), tc.problems, problems)
			}
			for i, p := range problems {
				if !strings.Contains(p.Message, tc.problems[i]) {
					t.Errorf("problem %d: %q does not say %q", i, p.Message, tc.problems[i])
				}
			}
			if tc.want == nil {
				if svc != nil {
					t.Fatalf("want no Service, got %+v", svc.Spec)
				}
				return
			}
			if svc == nil {
				t.Fatal("want a Service, got none")
			}
			if len(svc.Spec.Ports) != len(tc.want) {
				t.Fatalf("ports: want %+v, got %+v", tc.want, svc.Spec.Ports)
			}
			for i, w := range tc.want {
				g := svc.Spec.Ports[i]
				app := ""
				if g.AppProtocol != nil {
					app = *g.AppProtocol
				}
				if g.Name != w.name || g.Port != w.port || g.Protocol != w.protocol || app != w.app || g.TargetPort != intstr.FromInt32(w.port) {
					t.Errorf("port %d: want %+v, got %s %d/%s appProtocol=%q target=%s", i, w, g.Name, g.Port, g.Protocol, app, g.TargetPort.String())
				}
			}
		})
	}
}

func TestDesiredServiceShape(t *testing.T) {
	a, b := vm("b", port("http", 8080, "")), vm("a", port("http", 8080, ""))
	svc, _ := DesiredService("vms", "web", []Member{a, b})
	if svc.Name != "web" || svc.Namespace != "vms" || svc.Spec.Selector[mesh.AppLabel] != "web" || len(svc.Spec.Selector) != 1 {
		t.Fatalf("name/selector: %+v %+v", svc.ObjectMeta, svc.Spec.Selector)
	}
	if !Managed(svc) {
		t.Fatal("not labelled as virtmesh's")
	}
	if len(svc.OwnerReferences) != 2 || svc.OwnerReferences[0].Name != "a" || svc.OwnerReferences[1].Name != "b" {
		t.Fatalf("owners: %+v", svc.OwnerReferences)
	}
	for _, o := range svc.OwnerReferences {
		if o.Controller != nil || o.BlockOwnerDeletion != nil || o.APIVersion != "kubevirt.io/v1" || o.Kind != "VirtualMachine" {
			t.Fatalf("owner reference must be a plain non-controller reference to the VM: %+v", o)
		}
	}
	again, _ := DesiredService("vms", "web", []Member{b, a})
	if !equality.Semantic.DeepEqual(serviceApplyConfiguration(svc), serviceApplyConfiguration(again)) {
		t.Fatal("member order changed the Service")
	}
}

func TestValidServiceName(t *testing.T) {
	for app, ok := range map[string]bool{"web": true, "istio-vm": true, "9lives": false, "my.app": false, "Web": false, strings.Repeat("a", 64): false} {
		if got := ValidServiceName(app) == ""; got != ok {
			t.Errorf("%q: valid=%v, want %v", app, got, ok)
		}
	}
}

func TestDesiredServiceLeavesIstioPortsOutAndWarnsAboutSSH(t *testing.T) {
	svc, problems := DesiredService("vms", "web", []Member{vm("a", port("http", 8080, ""), port("", 15021, ""), port("ssh", 22, ""))})
	var ports []int32
	for _, p := range svc.Spec.Ports {
		ports = append(ports, p.Port)
	}
	if len(ports) != 2 || ports[0] != 22 || ports[1] != 8080 {
		t.Fatalf("ports %v, want [22 8080]", ports)
	}
	var msgs []string
	for _, p := range problems {
		msgs = append(msgs, p.Message)
	}
	all := strings.Join(msgs, "\n")
	if len(problems) != 2 || !strings.Contains(all, "port 15021 is reserved by Istio") || !strings.Contains(all, "never sends SSH through Istio") {
		t.Fatalf("problems: %s", all)
	}
	if only, _ := DesiredService("vms", "web", []Member{vm("a", port("", 15090, ""))}); only != nil {
		t.Fatalf("a Service with only Istio's ports: %+v", only)
	}
}
