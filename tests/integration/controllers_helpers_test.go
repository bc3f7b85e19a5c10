package integration

import (
	"context"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/controllers"
)

const converge = 30 * time.Second

var enabledNS = map[string]string{"istio-injection": "enabled"}

func createIn(ctx context.Context, ns string, obj client.Object) {
	GinkgoHelper()
	obj.SetNamespace(ns)
	Expect(adminClient.Create(ctx, obj)).To(Succeed())
}

func nadKey(ns string) client.ObjectKey {
	return client.ObjectKey{Namespace: ns, Name: controllers.DefaultNADName}
}

// nadExists reports whether a NAD of the default name exists in ns.
func nadExists(ctx context.Context, ns string) (bool, error) {
	err := adminClient.Get(ctx, nadKey(ns), &nadv1.NetworkAttachmentDefinition{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

func getService(ctx context.Context, ns, name string) func() (*corev1.Service, error) {
	return func() (*corev1.Service, error) {
		svc := &corev1.Service{}
		err := adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, svc)
		return svc, err
	}
}

func servicePorts(svc *corev1.Service) []int32 {
	var out []int32
	for _, p := range svc.Spec.Ports {
		out = append(out, p.Port)
	}
	return out
}

func ownerNames(obj client.Object) []string {
	var out []string
	for _, o := range obj.GetOwnerReferences() {
		out = append(out, o.Kind+"/"+o.Name)
	}
	return out
}

// eventReasons lists the reasons of the events about an object.
func eventReasons(ctx context.Context, ns, kind, name string) ([]string, error) {
	events := &corev1.EventList{}
	if err := adminClient.List(ctx, events, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var out []string
	for _, e := range events.Items {
		if e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name {
			out = append(out, e.Reason)
		}
	}
	return out, nil
}

func eventMessages(ctx context.Context, ns, kind, name, reason string) []string {
	GinkgoHelper()
	events := &corev1.EventList{}
	Expect(adminClient.List(ctx, events, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, e := range events.Items {
		if e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name && e.Reason == reason {
			out = append(out, e.Message)
		}
	}
	return out
}
