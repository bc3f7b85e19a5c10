package injector

import (
	"encoding/json"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// NetworksAnnotation is the Multus annotation the injector appends to.
const NetworksAnnotation = "k8s.v1.cni.cncf.io/networks"

// Kind says which NetworkAttachmentDefinition an injector makes pods reference.
type Kind string

const (
	// None means nothing (istio-cni chained, or no CNI plugin): no NAD is needed.
	None Kind = "None"
	// Shared means one NAD in a fixed namespace (Istio 1.19+, OpenShift Service
	// Mesh 3: default/istio-cni, created by the istio-cni chart).
	Shared Kind = "Shared"
	// PerNamespace means a NAD of that name in each pod's namespace, which nobody
	// but virtmesh creates (Istio 1.18 and older, or injectedAnnotations).
	PerNamespace Kind = "PerNamespace"
	// Maistra means a per-namespace NAD that OpenShift Service Mesh 2 creates in
	// every member namespace itself.
	Maistra Kind = "Maistra"
	// Unknown means the configuration could not be read.
	Unknown Kind = "Unknown"
)

// Decision is the NAD an injector makes a pod reference.
type Decision struct {
	Kind Kind
	// Namespace of a Shared NAD; empty otherwise (the pod's own namespace).
	Namespace string
	// Name of the NAD (the first one, when an annotation lists several).
	Name string
	// Why says where it comes from, or what could not be read, in words.
	Why string
	// Version is the injector's Istio release ("" if unknown), and
	// NetworksBug whether it is one that cannot start a pod whose networks
	// annotation is in JSON form (see JSONNetworksBug): only where the
	// template's appendMultusNetwork appends to that annotation.
	Version     string
	NetworksBug bool
	// Appends: the template's appendMultusNetwork adds the NAD to the pod's
	// own networks annotation.
	Appends bool
	// OverwritesNetworks: config.injectedAnnotations replaces the pod's
	// networks annotation, so a VM's secondary networks are lost.
	OverwritesNetworks bool
}

// String is how the decision reads in events and logs.
func (d Decision) String() string {
	switch d.Kind {
	case Shared:
		return fmt.Sprintf("shared NAD %s/%s", d.Namespace, d.Name)
	case PerNamespace, Maistra:
		return fmt.Sprintf("%s NAD %q in each namespace", strings.ToLower(string(d.Kind)), d.Name)
	}
	return string(d.Kind)
}

// Ref is the NAD ("namespace/name") the decision makes a pod in podNamespace
// reference, or "" when it references none (None) or is not known (Unknown).
func (d Decision) Ref(podNamespace string) string {
	switch d.Kind {
	case Shared:
		return d.Namespace + "/" + d.Name
	case PerNamespace, Maistra:
		return podNamespace + "/" + d.Name
	}
	return ""
}

type injectorConfig struct {
	InjectedAnnotations map[string]string `json:"injectedAnnotations"`
	DefaultTemplates    []string          `json:"defaultTemplates"`
	Templates           map[string]string `json:"templates"`
	Template            string            `json:"template"`
}

// Decide reads the ConfigMap's values (JSON) and config (YAML) and decides.
func Decide(values, config string) Decision {
	d := decide(values, config)
	if major, minor, patch, ok := Version(values); ok {
		d.Version = fmt.Sprintf("%d.%d.%d", major, minor, patch)
		d.NetworksBug = d.Appends && JSONNetworksBug(major, minor, patch)
	}
	return d
}

func decide(values, config string) Decision {
	var vals map[string]any
	if err := json.Unmarshal([]byte(values), &vals); err != nil {
		return Decision{Kind: Unknown, Why: fmt.Sprintf("its values are not JSON: %v", err)}
	}
	var cfg injectorConfig
	if err := yaml.Unmarshal([]byte(config), &cfg); err != nil {
		return Decision{Kind: Unknown, Why: fmt.Sprintf("its config is not YAML: %v", err)}
	}
	if v, ok := cfg.InjectedAnnotations[NetworksAnnotation]; ok {
		// Istio's webhook overwrites the template's value (and the pod's own) with it.
		d := fromNetworks(v, false, "config.injectedAnnotations sets "+NetworksAnnotation)
		d.OverwritesNetworks = true
		return d
	}
	// Pods get the injector's default templates (sidecar unless the
	// config says otherwise), rendered in order; the first with a Multus
	// line decides. (A pod may ask for others with inject.istio.io/templates:
	// virtmesh's VMIs do not.)
	names := cfg.DefaultTemplates
	if len(names) == 0 {
		names = []string{"sidecar"}
	}
	// Istio renders them in order and merges the results: the last one that
	// writes the annotation wins.
	var networks, expr, from string
	for _, name := range names {
		tmpl, ok := cfg.Templates[name]
		if !ok && name == "sidecar" && cfg.Template != "" {
			tmpl, ok = cfg.Template, true // Istio before 1.12: one template
		}
		if !ok {
			return Decision{Kind: Unknown, Why: fmt.Sprintf("its config has no %q template", name)}
		}
		n, e, found, err := networkFromTemplate(tmpl, vals)
		if err != nil {
			return Decision{Kind: Unknown, Why: fmt.Sprintf("the %s line of its %q template could not be evaluated: %v", NetworksAnnotation, name, err)}
		}
		if found && n != "" {
			networks, expr, from = n, e, name
		}
	}
	if networks == "" {
		return Decision{Kind: None, Why: "its templates add no Multus network with these values (istio-cni chained, or no CNI)"}
	}
	d := fromNetworks(networks, strings.Contains(expr, "istio_cni_network"), fmt.Sprintf("its %q template appends %s", from, networks))
	d.Appends = d.Kind != Unknown && d.Kind != None
	return d
}

// fromNetworks classifies a networks value: "ns/name" is a shared NAD, a bare
// name is looked up in the pod's namespace.
func fromNetworks(v string, maistra bool, why string) Decision {
	first := strings.TrimSpace(strings.Split(v, ",")[0])
	if strings.HasPrefix(first, "[") {
		return Decision{Kind: Unknown, Why: why + ", in JSON form, which virtmesh does not read"}
	}
	if first == "" {
		return Decision{Kind: None, Why: why}
	}
	name, _, _ := strings.Cut(first, "@") // name@interface
	if ns, n, ok := strings.Cut(name, "/"); ok {
		if ns == "" || n == "" {
			return Decision{Kind: Unknown, Why: fmt.Sprintf("%s, which names no NAD (%q)", why, first)}
		}
		return Decision{Kind: Shared, Namespace: ns, Name: n, Why: why}
	}
	if maistra {
		return Decision{Kind: Maistra, Name: name, Why: why + " (istio_cni.istio_cni_network: OpenShift Service Mesh 2 creates it in member namespaces)"}
	}
	return Decision{Kind: PerNamespace, Name: name, Why: why}
}
