package app

import (
	"flag"
	"strings"
	"testing"
	"time"
)

func TestDefaultsAreValid(t *testing.T) {
	if err := NewOptions().Validate(); err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
}

func TestFlagsParse(t *testing.T) {
	o := NewOptions()
	fs := flag.NewFlagSet("virtmesh", flag.ContinueOnError)
	o.AddFlags(fs)
	err := fs.Parse([]string{
		"--webhook-port=8443", "--webhook-cert-dir=/certs", "--metrics-bind-address=0",
		"--health-probe-bind-address=:9000", "--leader-elect", "--enable-webhook=false",
		"--graceful-shutdown-timeout=5s", "--enable-http2",
		"--excluded-namespaces= a, b ,,", "--bridge-policy=deny", "--ambient-policy=ignore",
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.WebhookPort != 8443 || o.WebhookCertDir != "/certs" || o.MetricsBindAddress != "0" ||
		o.HealthProbeBindAddress != ":9000" || !o.LeaderElect || o.EnableWebhook ||
		o.GracefulShutdownTimeout != 5*time.Second || !o.EnableHTTP2 {
		t.Fatalf("flags not applied: %+v", o)
	}
	if got := strings.Join(o.Mesh.ExcludedNamespaces, ","); got != "a,b" || o.Webhook.BridgePolicy != "deny" || o.Mesh.AmbientPolicy != "ignore" {
		t.Fatalf("mesh flags not applied: %+v", o.Mesh)
	}
}

func TestValidateNamesEveryBadFlag(t *testing.T) {
	cases := map[string]func(o *Options){
		"--webhook-port":              func(o *Options) { o.WebhookPort = 0 },
		"--webhook-cert-dir":          func(o *Options) { o.WebhookCertDir = "" },
		"--metrics-bind-address":      func(o *Options) { o.MetricsBindAddress = "8080" },
		"--health-probe-bind-address": func(o *Options) { o.HealthProbeBindAddress = ":99999" },
		"--graceful-shutdown-timeout": func(o *Options) { o.GracefulShutdownTimeout = -time.Second },
		"--shutdown-delay":            func(o *Options) { o.ShutdownDelay = -time.Second },
		"--bridge-policy":             func(o *Options) { o.Webhook.BridgePolicy = "nope" },
		"--ambient-policy":            func(o *Options) { o.Mesh.AmbientPolicy = "nope" },
	}
	for flagName, breakIt := range cases {
		t.Run(flagName, func(t *testing.T) {
			o := NewOptions()
			breakIt(o)
			err := o.Validate()
			if err == nil {
				t.Fatalf("accepted a bad %s", flagName)
			}
			if got := err.Error(); !strings.Contains(got, flagName) {
				t.Fatalf("error %q does not name %s", got, flagName)
			}
		})
	}
}

func TestWebhookCertDirMayBeEmptyWhenWebhookOff(t *testing.T) {
	o := NewOptions()
	o.EnableWebhook, o.WebhookCertDir = false, ""
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
}
