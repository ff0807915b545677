package ctl

import (
	"errors"
	"fmt"
)

// Exit codes of sitelinkctl; scripts may rely on them.
const (
	ExitOK            = 0 // success
	ExitFailed        = 1 // the operation failed
	ExitUsage         = 2 // bad command line (unknown command or flag, missing argument)
	ExitUnreachable   = 3 // sitelinkd is not running or does not answer
	ExitDenied        = 4 // permission denied
	ExitNotFound      = 5 // no such plugin or action
	ExitInvalidConfig = 6 // the configuration is invalid (reload rejected, config check failed)
)

// usageError is a bad command line.
type usageError struct {
	msg    string
	cmd    string // the command whose --help to suggest ("": sitelinkctl)
	hinted bool   // msg already says where to find help
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitError carries an explicit exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// ExitCode is the exit code for an error returned by a command.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	var ce *ConnectError
	if errors.As(err, &ce) {
		if ce.PermissionDenied() {
			return ExitDenied
		}
		return ExitUnreachable
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.Code {
		case "forbidden":
			return ExitDenied
		case "not_found":
			return ExitNotFound
		case "invalid_config":
			return ExitInvalidConfig
		case "invalid_argument":
			return ExitUsage
		}
		return ExitFailed
	}
	return ExitFailed
}
