package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/sitelink/sitelink/daemon/api"
)

// Backend is what the admin server needs from the daemon. Every method that waits takes
// the request's context: it ends when the client goes away, when a non-streaming request
// times out, or when the server shuts down (streams).
//
// Errors are reported with the sentinel errors below and *ConfigError (wrapped or not);
// anything else is an internal error (HTTP 500).
type Backend interface {
	// Status is GET /v1/status.
	Status(ctx context.Context) api.Status
	// Plugins is GET /v1/plugins.
	Plugins(ctx context.Context) []api.PluginStatus
	// Plugin is GET /v1/plugins/NAME; ErrNotFound for an unknown plugin.
	Plugin(ctx context.Context, name string) (api.PluginStatus, error)
	// RestartPlugin restarts a plugin; it also clears the failed state.
	RestartPlugin(ctx context.Context, name string) error
	// EnablePlugin and DisablePlugin start and stop a plugin until the next reload.
	EnablePlugin(ctx context.Context, name string) error
	DisablePlugin(ctx context.Context, name string) error
	// Reload re-reads the config file; a rejected config is a *ConfigError.
	Reload(ctx context.Context) (api.ReloadResult, error)
	// Config is GET /v1/config. Secrets should be redacted: readers may call it.
	Config(ctx context.Context) api.ConfigView
	// CheckConfig checks a config without applying it. A nil yaml means "the daemon's own
	// config file as it is on disk now".
	CheckConfig(ctx context.Context, yaml []byte) api.ConfigCheck
	// Action describes a plugin action; ErrNotFound for an unknown plugin or action. The
	// server uses it to decide the access needed (Mutating) and whether to stream.
	Action(ctx context.Context, plugin, action string) (api.ActionSpec, error)
	// InvokeAction runs a non-streaming action and returns its JSON result.
	InvokeAction(ctx context.Context, plugin, action string, args map[string]string) (json.RawMessage, error)
	// StreamAction runs a streaming action, calling emit for each item, until the action
	// ends or ctx ends. emit returns an error when the client is gone; StreamAction
	// should then return.
	StreamAction(ctx context.Context, plugin, action string, args map[string]string, emit func(json.RawMessage) error) error
	// Events sends the daemon's events of the given types (all when empty) until ctx
	// ends or emit fails.
	Events(ctx context.Context, types []string, emit func(api.Event) error) error
	// Version is GET /v1/version.
	Version() api.VersionInfo
	// Audit records an accepted changing request (before it runs): who asked for what.
	Audit(ctx context.Context, who Peer, what string)
}

// Errors a Backend returns (wrapped with %w or not); each maps to an HTTP status and an
// api.Error code.
var (
	ErrNotFound        = errors.New("not found")        // 404 not_found
	ErrInvalidArgument = errors.New("invalid argument") // 400 invalid_argument
	ErrConflict        = errors.New("conflict")         // 409 conflict
	ErrUnavailable     = errors.New("unavailable")      // 503 unavailable
)

// ConfigError is a rejected configuration (HTTP 422, code invalid_config); Errors are the
// individual problems, "FILE:LINE:COL: reason".
type ConfigError struct {
	Errors []string
}

func (e *ConfigError) Error() string {
	switch len(e.Errors) {
	case 0:
		return "invalid config"
	case 1:
		return "invalid config: " + e.Errors[0]
	}
	return "invalid config: " + e.Errors[0] + " (and " + strconv.Itoa(len(e.Errors)-1) + " more)"
}

// The api.Error codes.
const (
	CodeNotFound        = "not_found"
	CodeForbidden       = "forbidden"
	CodeInvalidArgument = "invalid_argument"
	CodeInvalidConfig   = "invalid_config"
	CodeConflict        = "conflict"
	CodeUnavailable     = "unavailable"
	CodeInternal        = "internal"
)

// errorFor maps a backend error to an HTTP status and an api.Error.
func errorFor(err error) (int, api.Error) {
	var ce *ConfigError
	switch {
	case errors.As(err, &ce):
		return http.StatusUnprocessableEntity, api.Error{Code: CodeInvalidConfig, Message: err.Error(), Details: ce.Errors}
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, api.Error{Code: CodeNotFound, Message: err.Error()}
	case errors.Is(err, ErrInvalidArgument):
		return http.StatusBadRequest, api.Error{Code: CodeInvalidArgument, Message: err.Error()}
	case errors.Is(err, ErrConflict):
		return http.StatusConflict, api.Error{Code: CodeConflict, Message: err.Error()}
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable, api.Error{Code: CodeUnavailable, Message: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, api.Error{Code: CodeUnavailable, Message: "timed out: " + err.Error()}
	}
	return http.StatusInternalServerError, api.Error{Code: CodeInternal, Message: err.Error()}
}
