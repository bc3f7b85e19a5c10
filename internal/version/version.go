// Package version holds the build's version, stamped by the linker:
//
//	go build -ldflags "-X github.com/virtmesh/virtmesh/internal/version.Version=v0.1.0"
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is set at build time; "devel" marks an unstamped build.
var Version = "devel"

// String describes the binary for --version and the startup log.
func String() string {
	commit := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	return fmt.Sprintf("virtmesh %s (commit %s, %s, %s/%s)", Version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
