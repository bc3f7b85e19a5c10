package main

import (
	"strings"
	"testing"
	"time"
)

// Lines as kube-apiserver 1.34 writes them with auditPolicy (trimmed of
// fields the load program does not read).
const auditLines = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns-1/events","verb":"create","user":{"username":"system:serviceaccount:virtmesh-system:virtmesh","groups":["system:serviceaccounts"]},"objectRef":{"resource":"events","namespace":"ns-1","name":"vm-1.18a","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestReceivedTimestamp":"2026-12-04T23:00:00.100000Z","stageTimestamp":"2026-12-04T23:00:00.200000Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a2","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns-1/events/vm-1.18a","verb":"patch","user":{"username":"system:serviceaccount:virtmesh-system:virtmesh"},"objectRef":{"resource":"events","namespace":"ns-1","name":"vm-1.18a","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"stageTimestamp":"2026-12-04T23:00:05.000000Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a3","stage":"Panic","verb":"update","user":{"username":"admin"},"impersonatedUser":{"username":"system:serviceaccount:virtmesh-system:virtmesh"},"objectRef":{"resource":"virtualmachineinstances","subresource":"status","namespace":"ns-2","name":"vmi-1"},"responseStatus":{"code":500},"stageTimestamp":"2026-12-04T23:00:06Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a4","stage":"ResponseComplete","verb":"patch","user":{"username":"system:apiserver"},"objectRef":{"resource":"events","namespace":"default","name":"svc.1"},"responseStatus":{"code":200},"stageTimestamp":"2026-12-04T23:00:07Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a5","stage":"ResponseComplete","verb":"delete","user":{"username":"system:kube-controller-manager"},"objectRef":{"resource":"namespaces","name":"gone"},"responseStatus":{"code":200},"stageTimestamp":"2026-12-04T23:00:08Z"}
`

func TestReadWritesByWhoseRightsAndFromSince(t *testing.T) {
	since := time.Date(2026, 12, 4, 23, 0, 1, 0, time.UTC)
	by, err := readWrites(strings.NewReader(auditLines), since)
	if err != nil {
		t.Fatal(err)
	}
	virtmesh := by["system:serviceaccount:virtmesh-system:virtmesh"]
	if len(virtmesh) != 2 {
		t.Fatalf("virtmesh's writes since %s = %v, want the PATCH and the impersonated update (not the create before)", since, virtmesh)
	}
	if got, want := virtmesh[0].String(), "patch events ns-1/vm-1.18a 200"; got != want {
		t.Errorf("first = %q, want %q", got, want)
	}
	if got, want := virtmesh[1].String(), "update virtualmachineinstances/status ns-2/vmi-1 500"; got != want {
		t.Errorf("second = %q, want %q", got, want)
	}
	if len(by["admin"]) != 0 {
		t.Errorf("an impersonated write counted for the impersonator: %v", by["admin"])
	}
	if len(by["system:apiserver"]) != 1 || len(by["system:kube-controller-manager"]) != 1 {
		t.Errorf("other writers = %v", by)
	}
	if got, want := countWrites(virtmesh), "2 (patch events 200: 1, update virtualmachineinstances/status 500: 1)"; got != want {
		t.Errorf("countWrites = %q, want %q", got, want)
	}
	if got := countWrites(nil); got != "none" {
		t.Errorf("countWrites(nil) = %q", got)
	}
	out := describeWrites(by)
	for _, want := range []string{"system:apiserver: 1", "namespaces gone 200", "system:serviceaccount:virtmesh-system:virtmesh: 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("describeWrites lacks %q:\n%s", want, out)
		}
	}
}

func TestReadWritesSkipsStagesBeforeTheResponse(t *testing.T) {
	line := `{"stage":"RequestReceived","verb":"create","user":{"username":"u"},"stageTimestamp":"2026-12-04T23:00:00Z"}` + "\n"
	by, err := readWrites(strings.NewReader(line), time.Time{})
	if err != nil || len(by) != 0 {
		t.Fatalf("readWrites = %v, %v; want nothing", by, err)
	}
}

func TestReadWritesRefusesALineItCannotRead(t *testing.T) {
	if _, err := readWrites(strings.NewReader("{not json\n"), time.Time{}); err == nil || !strings.Contains(err.Error(), "{not json") {
		t.Fatalf("err = %v, want one naming the line", err)
	}
}

func TestDescribeWritesListsAtMostTenPerUser(t *testing.T) {
	var b strings.Builder
	for range 12 {
		b.WriteString(`{"stage":"ResponseComplete","verb":"patch","user":{"username":"u"},"objectRef":{"resource":"events","namespace":"n","name":"e"},"responseStatus":{"code":200},"stageTimestamp":"2026-12-04T23:00:00Z"}` + "\n")
	}
	by, err := readWrites(strings.NewReader(b.String()), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	out := describeWrites(by)
	if n := strings.Count(out, "patch events n/e 200"); n != 10 {
		t.Errorf("%d writes listed, want 10:\n%s", n, out)
	}
	if !strings.Contains(out, "... and 2 more") {
		t.Errorf("no count of the rest:\n%s", out)
	}
}

// An offset taken while a line was being written falls inside it; a last
// line without its newline is still being written. Both are skipped, and
// every whole line from the offset on is read.
func TestReadWritesAtAnOffsetInsideALine(t *testing.T) {
	lines := strings.SplitAfter(auditLines, "\n")
	log := auditLines + `{"kind":"Event","stage":"ResponseComplete","verb":"cre` // being written
	for _, c := range []struct {
		name   string
		offset int64
		want   int // writes read
	}{
		{"at the start", 0, 5},
		{"at a line's start", int64(len(lines[0])), 4},
		{"inside a line: that line is skipped", int64(len(lines[0]) + 10), 3},
		{"on a line's last byte, its newline", int64(len(lines[0]) - 1), 4},
		{"at the partial last line", int64(len(auditLines)), 0},
		{"inside the partial last line", int64(len(auditLines) + 5), 0},
	} {
		by, err := readWritesAt(strings.NewReader(log), c.offset, time.Time{})
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		n := 0
		for _, w := range by {
			n += len(w)
		}
		if n != c.want {
			t.Errorf("%s (offset %d): %d writes, want %d: %v", c.name, c.offset, n, c.want, by)
		}
	}
}
