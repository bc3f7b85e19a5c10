// Command kubectl-virtmesh is the kubectl plugin "kubectl virtmesh": the
// mesh state of each VM ("why is my VM not in the mesh?") and whether a
// namespace's new VMs would be meshed, read with the user's own kubeconfig.
//
//	go install ./cmd/kubectl-virtmesh   # in a clone: go.mod's replace directives rule out @version
//	kubectl virtmesh status -A
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/virtmesh/virtmesh/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := cli.Main(ctx, os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
