package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a file, at a 1-based line and column (0 when unknown).
type Error struct {
	File string
	Line int
	Col  int
	Msg  string
}

// Error formats the problem as FILE:LINE:COL: reason.
func (e *Error) Error() string {
	if e.Line <= 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Errors is every problem found in one or more files. Parse, Load, LoadManifests and
// ValidateSchema return a non-empty *Errors; callers use errors.As to inspect it.
type Errors []*Error

// Error returns one problem per line.
func (e *Errors) Error() string {
	if e == nil || len(*e) == 0 {
		return "no errors"
	}
	lines := make([]string, len(*e))
	for i, x := range *e {
		lines[i] = x.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each *Error to errors.Is and errors.As.
func (e *Errors) Unwrap() []error {
	if e == nil {
		return nil
	}
	out := make([]error, len(*e))
	for i, x := range *e {
		out[i] = x
	}
	return out
}

// maxErrors bounds how many problems one file reports; the rest are counted.
const maxErrors = 1000

// collector gathers positioned errors for one file.
type collector struct {
	file    string
	errs    Errors
	dropped int
}

func (c *collector) add(line, col int, format string, args ...any) {
	if len(c.errs) >= maxErrors {
		c.dropped++
		return
	}
	c.errs = append(c.errs, &Error{File: c.file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

// err returns the collected problems sorted by position, or nil.
func (c *collector) err() error {
	return finish(c.errs, c.dropped)
}

// finish sorts errs by file and position and returns them as an *Errors, or nil.
func finish(errs Errors, dropped int) error {
	if len(errs) == 0 {
		return nil
	}
	slices.SortStableFunc(errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
	if dropped > 0 {
		last := errs[len(errs)-1]
		errs = append(errs, &Error{File: last.File, Line: last.Line, Col: last.Col,
			Msg: fmt.Sprintf("%d more errors not shown", dropped)})
	}
	return &errs
}
