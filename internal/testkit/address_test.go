package testkit

import (
	"net"
	"strings"
	"testing"
)

func TestFreeAddress(t *testing.T) {
	addr := FreeAddress()
	if !strings.HasPrefix(addr, "127.0.0.1:") || addr == "127.0.0.1:0" {
		t.Fatalf("got %q, want 127.0.0.1:<port>", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the address is not free: %v", err)
	}
	_ = l.Close()
}
