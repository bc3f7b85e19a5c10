package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// auditPolicy has kube-apiserver log every write (who, what, the response
// code, when) and nothing else: the steady-state goal is about virtmesh's
// writes, and the API server's own controllers and kube-controller-manager
// write too. Leases are left out: renewing them is what leader election does.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
- level: None
  resources:
  - group: coordination.k8s.io
    resources: ["leases"]
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None
`

// auditLog is the API server's audit log of writes.
type auditLog struct{ path string }

// newAuditLog writes the policy into dir and returns the kube-apiserver
// flags that log to dir.
func newAuditLog(dir string) (*auditLog, map[string]string, error) {
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return nil, nil, fmt.Errorf("writing the audit policy: %w", err)
	}
	a := &auditLog{path: filepath.Join(dir, "audit.log")}
	return a, map[string]string{
		"audit-policy-file": policy,
		"audit-log-path":    a.path,
		"audit-log-format":  "json",
		"audit-log-mode":    "blocking", // every write is in the file when its response is sent
		// Never rotated (the default rotates at 100 MB, which a 20,000-VMI
		// run nears): the offsets read from would point past the end.
		"audit-log-maxsize": "1000000",
	}, nil
}

// offset is the log's size now: what is written from here on comes later.
func (a *auditLog) offset() (int64, error) {
	fi, err := os.Stat(a.path)
	if err != nil {
		return 0, fmt.Errorf("audit log: %w", err)
	}
	return fi.Size(), nil
}

// auditEvent is what the load program reads of an audit.k8s.io/v1 Event.
type auditEvent struct {
	Stage string `json:"stage"`
	Verb  string `json:"verb"`
	User  struct {
		Username string `json:"username"`
	} `json:"user"`
	ImpersonatedUser *struct {
		Username string `json:"username"`
	} `json:"impersonatedUser"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	StageTimestamp time.Time `json:"stageTimestamp"`
}

func (e auditEvent) String() string { return e.describe(true) }

// describe says "verb resource[/subresource] [namespace/name] code".
func (e auditEvent) describe(withName bool) string {
	what := "?"
	if r := e.ObjectRef; r != nil {
		what = r.Resource
		if r.Subresource != "" {
			what += "/" + r.Subresource
		}
		if withName {
			what += " " + strings.TrimPrefix(r.Namespace+"/"+r.Name, "/")
		}
	}
	code := 0
	if e.ResponseStatus != nil {
		code = e.ResponseStatus.Code
	}
	return fmt.Sprintf("%s %s %d", e.Verb, what, code)
}

// writesSince returns the writes completed at or after since, read from
// offset on, by user name.
func (a *auditLog) writesSince(offset int64, since time.Time) (map[string][]auditEvent, error) {
	f, err := os.Open(a.path)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	defer func() { _ = f.Close() }()
	if fi, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	} else if fi.Size() < offset {
		return nil, fmt.Errorf("audit log %s is %d bytes, shorter than the %d read before: rotated or truncated", a.path, fi.Size(), offset)
	}
	return readWritesAt(f, offset, since)
}

// readWritesAt is readWrites from offset on. An offset taken while
// kube-apiserver was writing a line falls inside it: that line, an event
// from before the offset, is skipped.
func readWritesAt(f io.ReadSeeker, offset int64, since time.Time) (map[string][]auditEvent, error) {
	start := max(offset-1, 0)
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	r := bufio.NewReaderSize(f, 64*1024)
	if offset > 0 {
		prev, err := r.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		if prev != '\n' {
			if _, err := r.ReadBytes('\n'); err != nil && err != io.EOF {
				return nil, fmt.Errorf("audit log: %w", err)
			}
		}
	}
	return readWrites(r, since)
}

// readWrites reads the audit events of r, one JSON object a line. A last
// line without its newline is one kube-apiserver is still writing: skipped.
func readWrites(r io.Reader, since time.Time) (map[string][]auditEvent, error) {
	by := map[string][]auditEvent{}
	br := bufio.NewReaderSize(r, 64*1024)
	for {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			break // "" at the end, or a line being written
		}
		if err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		var e auditEvent
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("audit log line %q: %w", truncate(string(line), 200), err)
		}
		if e.Stage != "ResponseComplete" && e.Stage != "Panic" || e.StageTimestamp.Before(since) {
			continue
		}
		user := e.User.Username
		if e.ImpersonatedUser != nil {
			user = e.ImpersonatedUser.Username // whose rights the write used
		}
		by[user] = append(by[user], e)
	}
	return by, nil
}

// countWrites sums writes by verb, resource and response code.
func countWrites(writes []auditEvent) string {
	if len(writes) == 0 {
		return "none"
	}
	n := map[string]int{}
	for _, w := range writes {
		n[w.describe(false)]++
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(n)) {
		out = append(out, fmt.Sprintf("%s: %d", k, n[k]))
	}
	return fmt.Sprintf("%d (%s)", len(writes), strings.Join(out, ", "))
}

// describeWrites lists at most 10 writes of each user, users in name order.
func describeWrites(by map[string][]auditEvent) string {
	var b strings.Builder
	for _, user := range slices.Sorted(maps.Keys(by)) {
		writes := by[user]
		fmt.Fprintf(&b, "\n    %s: %d", user, len(writes))
		for i, w := range writes {
			if i == 10 {
				fmt.Fprintf(&b, "\n      ... and %d more", len(writes)-i)
				break
			}
			fmt.Fprintf(&b, "\n      %s %s", w.StageTimestamp.Format(time.TimeOnly), w)
		}
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
