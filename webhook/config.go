package webhook

import (
	"fmt"

	"github.com/virtmesh/virtmesh/internal/mesh"
)

// BridgePolicy says what to do with a bridge binding on the pod network,
// which breaks Istio.
type BridgePolicy string

const (
	// BridgeMasquerade switches the interface to masquerade.
	BridgeMasquerade BridgePolicy = "masquerade"
	// BridgeDeny refuses the VMI.
	BridgeDeny BridgePolicy = "deny"
)

// Config is the webhook's configuration.
type Config struct {
	mesh.Config
	BridgePolicy BridgePolicy
}

// DefaultConfig returns the defaults the manager runs with.
func DefaultConfig() Config {
	return Config{Config: mesh.DefaultConfig(), BridgePolicy: BridgeMasquerade}
}

// Validate rejects unknown policy values.
func (c Config) Validate() error {
	switch c.BridgePolicy {
	case BridgeMasquerade, BridgeDeny:
	default:
		return fmt.Errorf("--bridge-policy must be masquerade or deny, got %q", c.BridgePolicy)
	}
	return c.Config.Validate()
}
