package controllers

import (
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/virtmesh/virtmesh/internal/injector"
	"github.com/virtmesh/virtmesh/internal/mesh"
)

// CacheByObject is how the manager's cache must hold the objects the
// controllers watch: VMs and VMIs trimmed to what membership and Services
// read, Services only when labelled as virtmesh's (their selector and ports,
// and the managedFields entries that tell whether virtmesh owns them, what
// it last applied and who else changed them), NADs with virtmesh's own managedFields entries only, the one
// CRD it waits for.
// NetworkAttachmentDefinitions cannot be narrowed here: the cache resolves
// every type it is configured for when the manager is built, and the NAD CRD
// may not exist yet. They are few and small; DefaultTransform keeps only
// virtmesh's own managedFields entries. The manager must be built with both
// (app.NewManager is).
//
// Anything that reads VMs or VMIs through the manager's cache sees the trimmed
// objects; read the API server (mgr.GetAPIReader) for whole ones.
func CacheByObject(cfg Config) map[client.Object]cache.ByObject {
	by := map[client.Object]cache.ByObject{
		&kubevirtv1.VirtualMachineInstance{}: {Transform: trimVMI},
		&kubevirtv1.VirtualMachine{}:         {Transform: trimVM},
		&corev1.Service{}: {Label: labels.SelectorFromSet(labels.Set{mesh.ManagedByLabel: mesh.ManagedByValue}),
			Transform: trimService},
		// Launcher pods are read from LauncherPods. Narrowed here too, so a
		// read through the manager's cache (there is none) could never start
		// an informer on every pod in the cluster; informers start only when
		// first used, so this costs nothing.
		&corev1.Pod{}: {Label: labels.SelectorFromSet(labels.Set{LauncherLabel: LauncherLabelValue}), Transform: trimPod},
	}
	if cfg.NADMode != NADOff {
		by[&apiextensionsv1.CustomResourceDefinition{}] = cache.ByObject{Field: fields.OneTermEqualSelector("metadata.name", NADCRDName),
			Transform: trimCRD}
	}
	if cfg.NADMode == NADAuto {
		// Istio's injectors and their ConfigMaps, which say which NAD pods reference.
		by[&admissionregistrationv1.MutatingWebhookConfiguration{}] = cache.ByObject{
			Label: labels.SelectorFromSet(labels.Set{injector.WebhookLabel: injector.WebhookLabelValue})}
		if readable := cfg.readableIstioNamespaces(); len(readable) > 0 {
			namespaces := map[string]cache.Config{}
			for _, ns := range readable {
				namespaces[ns] = cache.Config{}
			}
			by[&corev1.ConfigMap{}] = cache.ByObject{Namespaces: namespaces, Transform: trimConfigMap}
		}
	}
	return by
}

// DefaultTransform is the transform of every other cached type: it keeps
// only virtmesh's own managedFields entries (a NAD is virtmesh's only if they
// own its label).
func DefaultTransform() toolscache.TransformFunc { return keepOwnManagedFields }

// keptAnnotations are the only annotations membership and Services read.
var keptAnnotations = [...]string{mesh.InjectKey, mesh.ServiceAnnotation, mesh.PortProtocolsAnnotation,
	mesh.PinnedAnnotation, mesh.OnboardingAnnotation}

func trimMeta(in *metav1.ObjectMeta) metav1.ObjectMeta {
	out := metav1.ObjectMeta{
		Name: in.Name, GenerateName: in.GenerateName, Namespace: in.Namespace, UID: in.UID,
		ResourceVersion: in.ResourceVersion, Generation: in.Generation, DeletionTimestamp: in.DeletionTimestamp,
		Labels: in.Labels, OwnerReferences: in.OwnerReferences,
	}
	for _, k := range keptAnnotations {
		if v, ok := in.Annotations[k]; ok {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[k] = v
		}
	}
	return out
}

// trimSpec keeps the networks, the interfaces' names, and the pod interface's
// binding and ports.
func trimSpec(in *kubevirtv1.VirtualMachineInstanceSpec) kubevirtv1.VirtualMachineInstanceSpec {
	out := kubevirtv1.VirtualMachineInstanceSpec{Networks: in.Networks}
	out.Domain.Devices.AutoattachPodInterface = in.Domain.Devices.AutoattachPodInterface
	pod := mesh.PodInterface(in)
	for i := range in.Domain.Devices.Interfaces {
		iface := &in.Domain.Devices.Interfaces[i]
		if iface == pod {
			out.Domain.Devices.Interfaces = append(out.Domain.Devices.Interfaces, kubevirtv1.Interface{
				Name: iface.Name, InterfaceBindingMethod: iface.InterfaceBindingMethod, Binding: iface.Binding, Ports: iface.Ports})
			continue
		}
		out.Domain.Devices.Interfaces = append(out.Domain.Devices.Interfaces, kubevirtv1.Interface{Name: iface.Name})
	}
	return out
}

func trimVMI(in any) (any, error) {
	vmi, ok := in.(*kubevirtv1.VirtualMachineInstance)
	if !ok {
		return in, nil
	}
	out := &kubevirtv1.VirtualMachineInstance{TypeMeta: vmi.TypeMeta, ObjectMeta: trimMeta(&vmi.ObjectMeta), Spec: trimSpec(&vmi.Spec)}
	out.Labels = withoutNodeLabels(out.Labels)
	// The mesh state reads where it runs and on which pod, whether it is
	// paused, and whether it can migrate.
	out.Status.Phase, out.Status.NodeName, out.Status.ActivePods = vmi.Status.Phase, vmi.Status.NodeName, vmi.Status.ActivePods
	// Onboarding reads whether a migration is running, and which one moved
	// the VM into which pod.
	if m := vmi.Status.MigrationState; m != nil {
		out.Status.MigrationState = &kubevirtv1.VirtualMachineInstanceMigrationState{StartTimestamp: m.StartTimestamp,
			Completed: m.Completed, Failed: m.Failed, MigrationUID: m.MigrationUID, TargetPod: m.TargetPod}
	}
	for _, c := range vmi.Status.Conditions {
		if keptCondition(c.Type) {
			out.Status.Conditions = append(out.Status.Conditions, kubevirtv1.VirtualMachineInstanceCondition{Type: c.Type, Status: c.Status, Reason: c.Reason})
		}
	}
	return out, nil
}

// nodeLabels are the labels KubeVirt moves with a VMI from node to node (at
// scheduling, twice per migration, and while its launcher image is outdated
// during an upgrade). Nothing virtmesh decides reads them (the mesh state
// reads the node from the status), and kept in the cache every migration of
// every VM would look like a membership change: a reconcile of its app's
// Service and of its namespace's NAD.
var nodeLabels = [...]string{kubevirtv1.NodeNameLabel, kubevirtv1.MigrationTargetNodeNameLabel, kubevirtv1.OutdatedLauncherImageLabel}

// withoutNodeLabels is labels without nodeLabels (the same map when it has
// none of them).
func withoutNodeLabels(labels map[string]string) map[string]string {
	n := 0
	for _, k := range nodeLabels {
		if _, ok := labels[k]; ok {
			n++
		}
	}
	if n == 0 {
		return labels
	}
	out := make(map[string]string, len(labels)-n)
	for k, v := range labels {
		out[k] = v
	}
	for _, k := range nodeLabels {
		delete(out, k)
	}
	return out
}

// keptCondition reports whether the cache keeps a VMI condition of type t:
// the mesh state reads whether the VMI is paused and whether it can migrate.
func keptCondition(t kubevirtv1.VirtualMachineInstanceConditionType) bool {
	return t == kubevirtv1.VirtualMachineInstanceIsMigratable || t == kubevirtv1.VirtualMachineInstancePaused
}

// The label KubeVirt gives every launcher pod, and the one naming its VMI's UID.
const (
	LauncherLabel      = "kubevirt.io"
	LauncherLabelValue = "virt-launcher"
	CreatedByLabel     = "kubevirt.io/created-by"
)

// maxPodNetworks is how many of a launcher pod's NADs the cache keeps.
const maxPodNetworks = 16

// trimPod keeps what the mesh state reads of a launcher pod (LauncherPods
// holds it flattened): its VMI (owner
// and created-by label), node, phase, Multus networks annotation, and the
// istio-proxy container (or native sidecar) and its readiness; the other
// containers by name only.
func trimPod(in any) (any, error) {
	pod, ok := in.(*corev1.Pod)
	if !ok {
		return in, nil
	}
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID,
		ResourceVersion: pod.ResourceVersion, CreationTimestamp: pod.CreationTimestamp, DeletionTimestamp: pod.DeletionTimestamp}}
	// Anyone may label a pod kubevirt.io=virt-launcher: one that no VMI
	// controls is kept as its name alone, whatever its size.
	owner := metav1.GetControllerOfNoCopy(pod)
	uid := pod.Labels[CreatedByLabel]
	if owner == nil || owner.Kind != "VirtualMachineInstance" || uid == "" || string(owner.UID) != uid {
		return out, nil
	}
	out.OwnerReferences = []metav1.OwnerReference{*owner}
	out.Labels = map[string]string{CreatedByLabel: uid}
	// The NADs it references, as "ns/name" (not the raw annotation, which
	// may be large JSON), at most a few.
	if refs := mesh.PodNetworks(pod); len(refs) > 0 {
		if len(refs) > maxPodNetworks {
			refs = refs[:maxPodNetworks]
		}
		out.Annotations = map[string]string{mesh.NetworksAnnotation: strings.Join(refs, ",")}
	}
	// Whether the VMI asked for KubeVirt's Istio networking when the pod was
	// created (virt-controller copies the VMI's annotations onto it).
	// Kept as "true" or not at all: any other value is off.
	if strings.EqualFold(pod.Annotations[mesh.InjectKey], "true") {
		if out.Annotations == nil {
			out.Annotations = map[string]string{}
		}
		out.Annotations[mesh.InjectKey] = "true"
	}
	out.Spec.NodeName = pod.Spec.NodeName
	out.Status.Phase = pod.Status.Phase
	for _, c := range pod.Spec.Containers {
		if c.Name == mesh.ProxyContainer {
			out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name})
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == mesh.ProxyContainer {
			out.Spec.InitContainers = append(out.Spec.InitContainers, corev1.Container{Name: c.Name, RestartPolicy: c.RestartPolicy})
		}
	}
	keep := func(in []corev1.ContainerStatus) []corev1.ContainerStatus {
		for _, s := range in {
			if s.Name == mesh.ProxyContainer {
				return []corev1.ContainerStatus{{Name: s.Name, Ready: s.Ready}}
			}
		}
		return nil
	}
	out.Status.ContainerStatuses = keep(pod.Status.ContainerStatuses)
	out.Status.InitContainerStatuses = keep(pod.Status.InitContainerStatuses)
	return out, nil
}

func trimVM(in any) (any, error) {
	vm, ok := in.(*kubevirtv1.VirtualMachine)
	if !ok {
		return in, nil
	}
	out := &kubevirtv1.VirtualMachine{TypeMeta: vm.TypeMeta, ObjectMeta: trimMeta(&vm.ObjectMeta)}
	if t := vm.Spec.Template; t != nil {
		out.Spec.Template = &kubevirtv1.VirtualMachineInstanceTemplateSpec{ObjectMeta: trimMeta(&t.ObjectMeta), Spec: trimSpec(&t.Spec)}
	}
	return out, nil
}

// trimService keeps what the Service controller reads of a Service labelled
// as virtmesh's: its metadata, with virtmesh's managedFields entries (whether
// virtmesh owns it, what it last applied) and those of anyone else who has
// changed what it is for (takesOver); its selector and ports.
func trimService(in any) (any, error) {
	svc, ok := in.(*corev1.Service)
	if !ok {
		return in, nil
	}
	out := &corev1.Service{TypeMeta: svc.TypeMeta, ObjectMeta: svc.ObjectMeta}
	out.ManagedFields = nil
	for _, e := range svc.ManagedFields {
		if e.Manager == FieldOwner || takesOver(e) {
			out.ManagedFields = append(out.ManagedFields, e)
		}
	}
	out.Spec.Selector, out.Spec.Ports = svc.Spec.Selector, svc.Spec.Ports
	return out, nil
}

// keepOwnManagedFields keeps virtmesh's own managedFields entries (what it
// last applied; and what versions before server-side apply wrote, until they
// are migrated) and drops everyone else's.
func keepOwnManagedFields(in any) (any, error) {
	obj, ok := in.(client.Object)
	if !ok {
		return in, nil
	}
	var own []metav1.ManagedFieldsEntry
	for _, e := range obj.GetManagedFields() {
		if e.Manager == FieldOwner {
			own = append(own, e)
		}
	}
	obj.SetManagedFields(own)
	return obj, nil
}

// trimConfigMap keeps the data of the injectors' ConfigMaps only (the
// control plane's namespace holds others, some large).
func trimConfigMap(in any) (any, error) {
	cm, ok := in.(*corev1.ConfigMap)
	if !ok || strings.HasPrefix(cm.Name, injectorConfigMapPrefix) {
		return in, nil
	}
	return &corev1.ConfigMap{TypeMeta: cm.TypeMeta, ObjectMeta: metav1.ObjectMeta{Name: cm.Name, Namespace: cm.Namespace,
		UID: cm.UID, ResourceVersion: cm.ResourceVersion}}, nil
}

// injectorConfigMapPrefix starts the name of every injector's ConfigMap.
const injectorConfigMapPrefix = "istio-sidecar-injector"

// trimCRD keeps whether the CRD is established.
func trimCRD(in any) (any, error) {
	crd, ok := in.(*apiextensionsv1.CustomResourceDefinition)
	if !ok {
		return in, nil
	}
	out := &apiextensionsv1.CustomResourceDefinition{TypeMeta: crd.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Name: crd.Name, UID: crd.UID, ResourceVersion: crd.ResourceVersion, DeletionTimestamp: crd.DeletionTimestamp}}
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established {
			out.Status.Conditions = []apiextensionsv1.CustomResourceDefinitionCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	return out, nil
}

// trimmedChanged reports whether two trimmed objects differ in anything but
// their resourceVersion and status: status updates of a running VMI do not
// count.
func trimmedChanged(a, b client.Object) bool {
	return differ(a, b, true)
}

// stateChanged is trimmedChanged counting status changes too.
func stateChanged(a, b client.Object) bool {
	return differ(a, b, false)
}

func differ(a, b client.Object, ignoreStatus bool) bool {
	if a.GetResourceVersion() == b.GetResourceVersion() && a.GetResourceVersion() != "" {
		return false // a resync: the same object, nothing to copy and compare
	}
	a, b = a.DeepCopyObject().(client.Object), b.DeepCopyObject().(client.Object)
	for _, o := range []client.Object{a, b} {
		o.SetResourceVersion("")
		o.SetManagedFields(nil)
		if vmi, ok := o.(*kubevirtv1.VirtualMachineInstance); ok && ignoreStatus {
			// KubeVirt's VMI has no status subresource: each status write
			// bumps its generation too.
			vmi.Status, vmi.Generation = kubevirtv1.VirtualMachineInstanceStatus{}, 0
		}
	}
	return !equality.Semantic.DeepEqual(a, b)
}
