package injector

import (
	"fmt"
	"regexp"
	"strings"
	"text/template"
)

var (
	appendAction = regexp.MustCompile(`\{\{-?\s*(appendMultusNetwork\s[^}]*?)\s*-?\}\}`)
	// action is any template action; its body is matched lazily, as
	// text/template ends an action at the first closing delimiter.
	action = regexp.MustCompile(`(?s)\{\{-?\s*(.*?)\s*-?\}\}`)
	word   = regexp.MustCompile(`^[a-z]+`)
)

// fieldRef is a field chain or variable in an action: .Values.pilot, $x.
var fieldRef = regexp.MustCompile(`(?:^|[\s(])(\$[\w.]*|\.[\w.]*)`)

// readsMoreThanValues: the action reads something besides .Values (the pod,
// its revision, its proxy configuration, a variable), which is not known here.
func readsMoreThanValues(action string) bool {
	for _, m := range fieldRef.FindAllStringSubmatch(action, -1) {
		if m[1] != ".Values" && !strings.HasPrefix(m[1], ".Values.") {
			return true
		}
	}
	return false
}

// block is an action that opens a block enclosing the Multus line.
type block struct {
	keyword string // if, with, range, define, block
	action  string // the whole action, for the error message and the if
	inElse  bool   // the Multus line is in an else branch of it
}

// enclosing returns the blocks still open at the end of text, outermost first.
func enclosing(text string) []block {
	var open []block
	for _, m := range action.FindAllStringSubmatch(text, -1) {
		body := m[1]
		if strings.HasPrefix(body, "/*") {
			continue // a comment
		}
		switch kw := word.FindString(body); kw {
		case "if", "with", "range", "define", "block":
			open = append(open, block{keyword: kw, action: body})
		case "end":
			if len(open) > 0 {
				open = open[:len(open)-1]
			}
		case "else":
			if len(open) > 0 {
				open[len(open)-1].inElse = true
			}
		}
	}
	return open
}

// networkFromTemplate evaluates the injection template's Multus line with the
// injector's values: the appendMultusNetwork action and the if-blocks around
// it, as the injector would (text/template, the same eq/or/not). It returns
// the network appended ("" when the conditions do not hold), the action's
// argument expression, and whether the template has such a line at all. A
// line inside an else branch, or inside with/range blocks, is not evaluated:
// an error says so (the caller then does not guess).
func networkFromTemplate(tmpl string, values map[string]any) (network, expr string, found bool, err error) {
	loc := appendAction.FindStringSubmatchIndex(tmpl)
	if loc == nil {
		return "", "", false, nil
	}
	expr = tmpl[loc[2]:loc[3]]
	// One line may set the annotation: a second (a literal value, another
	// append, the pipeline form) would be guessed at, not read.
	lines := 0
	for _, l := range strings.Split(tmpl, "\n") {
		if strings.Contains(l, NetworksAnnotation) || strings.Contains(l, "appendMultusNetwork") {
			lines++
		}
	}
	if lines != 1 {
		return "", expr, true, fmt.Errorf("%d lines of it set or read %s", lines, NetworksAnnotation)
	}
	var conds []string
	for _, b := range enclosing(tmpl[:loc[0]]) {
		switch {
		case b.inElse:
			return "", expr, true, fmt.Errorf("it is in the else branch of {{%s}}", b.action)
		case b.keyword != "if":
			return "", expr, true, fmt.Errorf("it is inside {{%s}}", b.action)
		case readsMoreThanValues(b.action):
			// Only the values are known here, not the pod, its revision or
			// its proxy configuration.
			return "", expr, true, fmt.Errorf("its condition {{%s}} reads more than the values", b.action)
		}
		conds = append(conds, "{{"+b.action+"}}")
	}
	src := strings.Join(conds, "") + "{{" + expr + "}}" + strings.Repeat("{{end}}", len(conds))
	// Istio parses its templates with text/template's default options, under
	// which a key missing from the values reads as no value: the same here.
	t, err := template.New("networks").Funcs(template.FuncMap{
		"appendMultusNetwork": func(_ any, network any) string { return fmt.Sprint(network) },
	}).Parse(src)
	if err != nil {
		return "", expr, true, err
	}
	var out strings.Builder
	data := map[string]any{"Values": values, "ObjectMeta": map[string]any{"Annotations": map[string]string{}}}
	if err := t.Execute(&out, data); err != nil {
		return "", expr, true, err
	}
	network = strings.TrimSpace(out.String())
	if network == "<no value>" || network == "<nil>" {
		network = ""
	}
	return network, expr, true, nil
}
