package injector

import (
	"fmt"
	"regexp"
	"strings"
	"text/template"
)

var (
	appendAction = regexp.MustCompile(`\{\{-?\s*(appendMultusNetwork\s.*?)\s*-?\}\}`)
	ifAction     = regexp.MustCompile(`^\{\{-?\s*if\s.*\}\}$`)
	endAction    = regexp.MustCompile(`^\{\{-?\s*end\s*-?\}\}$`)
	elseAction   = regexp.MustCompile(`^\{\{-?\s*else`)
)

// networkFromTemplate evaluates the injection template's Multus line with the
// injector's values: the appendMultusNetwork action and the if-blocks around
// it, as the injector would (text/template, the same eq/or/not). It returns
// the network appended ("" when the conditions do not hold), the action's
// argument expression, and whether the template has such a line at all.
func networkFromTemplate(tmpl string, values map[string]any) (network, expr string, found bool, err error) {
	lines := strings.Split(tmpl, "\n")
	at := -1
	for i, l := range lines {
		if appendAction.MatchString(l) {
			at = i
			break
		}
	}
	if at < 0 {
		return "", "", false, nil
	}
	action := appendAction.FindStringSubmatch(lines[at])[1]
	var conds []string
	depth := 0
	for i := at - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		switch {
		case endAction.MatchString(l):
			depth++
		case ifAction.MatchString(l) && depth > 0:
			depth--
		case ifAction.MatchString(l):
			conds = append([]string{l}, conds...)
		case elseAction.MatchString(l) && depth == 0:
			return "", action, true, fmt.Errorf("an else branch encloses it")
		}
	}
	src := strings.Join(conds, "") + "{{" + action + "}}" + strings.Repeat("{{end}}", len(conds))
	// Istio parses its templates with text/template's default options, under
	// which a key missing from the values reads as no value: the same here.
	t, err := template.New("networks").Funcs(template.FuncMap{
		"appendMultusNetwork": func(_ any, network any) string { return fmt.Sprint(network) },
	}).Parse(src)
	if err != nil {
		return "", action, true, err
	}
	var out strings.Builder
	data := map[string]any{"Values": values, "ObjectMeta": map[string]any{"Annotations": map[string]string{}}}
	if err := t.Execute(&out, data); err != nil {
		return "", action, true, err
	}
	network = strings.TrimSpace(out.String())
	if network == "<no value>" || network == "<nil>" {
		network = ""
	}
	return network, action, true, nil
}
