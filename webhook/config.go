package webhook

import (
	"fmt"
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

// Config is the webhook's own configuration. Membership (which VMIs are in
// the mesh) is configured by mesh.Config, shared with the controllers.
type Config struct {
	BridgePolicy BridgePolicy
	// MaxRequestBytes is the largest admission review read; larger ones
	// are refused unread.
	MaxRequestBytes int64
	// MaxInFlightBytes bounds the bytes of reviews handled at once; more
	// wait (limitRequests).
	MaxInFlightBytes int64
}

// DefaultConfig returns the defaults the manager runs with.
func DefaultConfig() Config {
	return Config{BridgePolicy: BridgeMasquerade, MaxRequestBytes: DefaultMaxRequestBytes, MaxInFlightBytes: DefaultMaxInFlightBytes}
}

// Validate rejects unknown policy values and limits that cannot work.
func (c Config) Validate() error {
	switch c.BridgePolicy {
	case BridgeMasquerade, BridgeDeny:
		return validateLimits(c.MaxRequestBytes, c.MaxInFlightBytes)
	default:
		return fmt.Errorf("--bridge-policy must be masquerade or deny, got %q", c.BridgePolicy)
	}
}
