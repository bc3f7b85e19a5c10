package main

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

func toYAML(v any) []byte {
	b, err := yaml.Marshal(v)
	if err != nil {
		return []byte(err.Error())
	}
	return b
}

func printYAML(v any) {
	for _, l := range strings.Split(strings.TrimRight(string(toYAML(v)), "\n"), "\n") {
		fmt.Println("      " + l)
	}
}

// printDiff shows metadata and spec as written against as stored (fields the
// API server sets itself, such as uid and managedFields, left out).
func printDiff(written, stored *kubevirtv1.VirtualMachineInstance) {
	view := func(v *kubevirtv1.VirtualMachineInstance) []string {
		meta := map[string]any{"name": v.Name, "labels": v.Labels}
		if len(v.Annotations) > 0 {
			meta["annotations"] = v.Annotations
		}
		m := map[string]any{"metadata": meta, "spec": v.Spec}
		return strings.Split(strings.TrimRight(string(toYAML(m)), "\n"), "\n")
	}
	for _, l := range diff(view(written), view(stored)) {
		fmt.Println("      " + l)
	}
}

// diff is a line diff (longest common subsequence), unchanged lines prefixed
// with a space.
func diff(a, b []string) []string {
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			out = append(out, "  "+a[i])
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]):
			out = append(out, "+ "+b[j])
			j++
		default:
			out = append(out, "- "+a[i])
			i++
		}
	}
	return out
}

func printEvents(ctx context.Context, c client.Client, kind, name string) error {
	return waitFor(ctx, func() error {
		events := &corev1.EventList{}
		if err := c.List(ctx, events, client.InNamespace(ns)); err != nil {
			return err
		}
		n := 0
		for _, e := range events.Items {
			if e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name {
				say("  %s %s: %s", e.Type, e.Reason, e.Message)
				n++
			}
		}
		if n == 0 {
			return fmt.Errorf("no events on %s %s yet", kind, name)
		}
		return nil
	})
}
