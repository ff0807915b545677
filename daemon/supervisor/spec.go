package supervisor

import (
	"bytes"
	"encoding/json"
	"slices"
	"time"
)

// Spec is the desired state of one plugin.
type Spec struct {
	Name    string
	Enabled bool
	// Binary is the plugin executable; Args its extra arguments.
	Binary string
	Args   []string
	// Vendor plugins come from a plugins.d manifest, which pins SHA256 (hex), the API
	// version and the capabilities the plugin may have.
	Vendor     bool
	SHA256     string
	APIVersion int
	Caps       []string
	// User runs the plugin ("" = the supervisor's default plugin user).
	User string
	// Required plugins must run for the daemon to be ready.
	Required bool
	// After names plugins that must be running before this one starts.
	After []string
	// ActiveWhen is "always" or "master".
	ActiveWhen string
	// Config is the plugin's config section as JSON.
	Config json.RawMessage
}

// launchEqual reports whether two specs start the same process the same way.
func launchEqual(a, b Spec) bool {
	return a.Binary == b.Binary && slices.Equal(a.Args, b.Args) && a.Vendor == b.Vendor &&
		a.SHA256 == b.SHA256 && a.APIVersion == b.APIVersion && slices.Equal(a.Caps, b.Caps) &&
		a.User == b.User && a.Enabled == b.Enabled
}

func configEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// RestartPolicy says how a dying plugin is restarted.
type RestartPolicy struct {
	// Max restarts within Window put the plugin in state failed.
	Max    int
	Window time.Duration
	// The first restart is immediate; then BackoffMin doubling up to BackoffMax.
	BackoffMin time.Duration
	BackoffMax time.Duration
}

// delay is the wait before the n-th restart in the window (n from 1).
func (p RestartPolicy) delay(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := p.BackoffMin
	if d <= 0 {
		d = 100 * time.Millisecond
	}
	for i := 2; i < n && d < p.BackoffMax; i++ {
		d *= 2
	}
	if p.BackoffMax > 0 && d > p.BackoffMax {
		d = p.BackoffMax
	}
	return d
}
