package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// FieldError is one problem in a plugin's config, located by a path such as
// "gateways[1].endpoint". The daemon maps the path back to the config file's line.
type FieldError struct {
	Path    string
	Message string
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Message
	}
	return e.Path + ": " + e.Message
}

// FieldErrors is what Configure returns for a bad config.
type FieldErrors []FieldError

func (e FieldErrors) Error() string {
	parts := make([]string, len(e))
	for i, fe := range e {
		parts[i] = fe.Error()
	}
	return strings.Join(parts, "; ")
}

// Add appends a field error; handy while validating.
func (e *FieldErrors) Add(path, format string, args ...any) {
	*e = append(*e, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

// Err returns nil when there are no errors.
func (e FieldErrors) Err() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

// DecodeConfig decodes a config section strictly (unknown fields are errors) into v,
// returning FieldErrors with paths. An empty or null section decodes to v unchanged, so
// set defaults in v before calling.
func DecodeConfig(raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &ute):
			return FieldErrors{{Path: ute.Field, Message: fmt.Sprintf("expected %s, got %s", ute.Type, ute.Value)}}
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return FieldErrors{{Path: field, Message: "unknown field"}}
		default:
			return FieldErrors{{Message: err.Error()}}
		}
	}
	return nil
}
