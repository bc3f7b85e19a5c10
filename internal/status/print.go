package status

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"
)

// Formats kubectl virtmesh prints in (-o).
const (
	FormatTable = ""
	FormatWide  = "wide"
	FormatJSON  = "json"
	FormatYAML  = "yaml"
)

// ValidFormat reports whether -o names a format.
func ValidFormat(f string) error {
	switch f {
	case FormatTable, FormatWide, FormatJSON, FormatYAML:
		return nil
	}
	return fmt.Errorf("unknown output format %q: use wide, json or yaml", f)
}

// List is the JSON and YAML form of status, shaped like a kubectl List.
// Fields a table shows as "-" (none) are left out.
type List struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Items      []Row  `json:"items"`
}

// ListAPIVersion versions the JSON and YAML form of kubectl virtmesh status.
const ListAPIVersion = "virtmesh.io/v1alpha1"

// PrintRows prints rows as a table (with a NAMESPACE column for all
// namespaces), a wide table, JSON or YAML.
func PrintRows(w io.Writer, rows []Row, format string, allNamespaces bool) error {
	switch format {
	case FormatJSON, FormatYAML:
		items := make([]Row, len(rows))
		for i, r := range rows {
			r.Proxy, r.Service, r.NAD = undash(r.Proxy), undash(r.Service), undash(r.NAD)
			items[i] = r
		}
		return encode(w, List{APIVersion: ListAPIVersion, Kind: "VirtmeshStatusList", Items: items}, format)
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "No VirtualMachines or VirtualMachineInstances found.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	var head []string
	if allNamespaces {
		head = append(head, "NAMESPACE")
	}
	head = append(head, "NAME", "KIND", "STATE", "PROXY", "SERVICE", "NAD")
	if format == FormatWide {
		head = append(head, "POD", "NODE", "REASON", "NEXT STEP")
	} else {
		head = append(head, "REASON / NEXT STEP")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, r := range rows {
		var cols []string
		if allNamespaces {
			cols = append(cols, r.Namespace)
		}
		cols = append(cols, r.Name, shortKind(r.Kind), string(r.State), r.Proxy, r.Service, r.NAD)
		if format == FormatWide {
			cols = append(cols, dash(r.Pod), dash(r.Node), r.Reason, dash(r.NextStep))
		} else if r.NextStep != "" {
			cols = append(cols, r.NextStep)
		} else {
			cols = append(cols, r.Reason)
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	return tw.Flush()
}

// PrintCheck prints check-namespace's answer.
func PrintCheck(w io.Writer, c *Check, format string) error {
	switch format {
	case FormatJSON, FormatYAML:
		return encode(w, c, format)
	}
	verdict := "not meshed"
	if c.Meshed {
		verdict = "meshed"
	}
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	fmt.Fprintf(tw, "Namespace:\t%s\n", c.Namespace)
	fmt.Fprintf(tw, "New VMs:\t%s: %s\n", verdict, c.Why)
	fmt.Fprintf(tw, "virtmesh webhook:\t%s\n", c.Webhook)
	fmt.Fprintf(tw, "Istio injector:\t%s\n", c.Injector)
	fmt.Fprintf(tw, "istio-cni NAD:\t%s\n", c.NAD)
	fmt.Fprintf(tw, "VMs here:\t%s\n", counts(c.VMs))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(c.Problems) == 0 {
		msg := "No problems found."
		for _, line := range []string{c.Webhook, c.Injector, c.NAD} {
			if strings.HasPrefix(line, "?") {
				msg = "No problems found in what you may read; the lines showing ? could not be checked."
				break
			}
		}
		_, err := fmt.Fprintln(w, msg)
		return err
	}
	fmt.Fprintln(w, "Problems:")
	for _, p := range c.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
	return nil
}

func encode(w io.Writer, v any, format string) error {
	if format == FormatYAML {
		out, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(out)
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func shortKind(kind string) string {
	if kind == "VirtualMachine" {
		return "VM"
	}
	return "VMI"
}

func undash(s string) string {
	if s == "-" {
		return ""
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
