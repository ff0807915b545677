package ctl

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"

	"github.com/sitelink/sitelink/daemon/api"
)

// maxAnswerBytes bounds a non-streaming answer; maxLineBytes one line of a stream.
const (
	maxAnswerBytes = 64 << 20
	maxLineBytes   = 16 << 20
)

// Client talks to sitelinkd's admin API over its unix socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the admin socket at path. Requests are bounded by their
// context only.
func NewClient(path string) *Client {
	return &Client{
		socket: path,
		http: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
			DisableCompression: true,
		}},
	}
}

// Socket is the path the client connects to.
func (c *Client) Socket() string { return c.socket }

// ConnectError is a failure to reach the daemon: it is not running, or the socket is not
// accessible.
type ConnectError struct {
	Socket string
	Err    error
}

func (e *ConnectError) Error() string {
	switch {
	case errors.Is(e.Err, os.ErrNotExist):
		return fmt.Sprintf("sitelinkd is not running (no socket at %s)", e.Socket)
	case errors.Is(e.Err, syscall.ECONNREFUSED):
		return fmt.Sprintf("sitelinkd is not running (nothing listens on %s)", e.Socket)
	case e.PermissionDenied():
		return fmt.Sprintf("permission denied on %s: you need to be root or in group sitelink-admin/sitelink", e.Socket)
	case errors.Is(e.Err, context.DeadlineExceeded):
		return fmt.Sprintf("sitelinkd did not answer on %s in time", e.Socket)
	}
	return fmt.Sprintf("cannot reach sitelinkd on %s: %v", e.Socket, e.Err)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// PermissionDenied reports whether the socket exists but may not be used.
func (e *ConnectError) PermissionDenied() bool {
	return errors.Is(e.Err, os.ErrPermission)
}

// APIError is an error answer of the daemon (or an error that ended a stream).
type APIError struct {
	// Status is the HTTP status; 0 for an error that ended a stream.
	Status int
	// Code, Message and Details are the api.Error.
	Code    string
	Message string
	Details []string
}

func (e *APIError) Error() string { return e.Message }

func apiErrorFrom(status int, body []byte) (*APIError, bool) {
	var ae api.Error
	if json.Unmarshal(body, &ae) != nil || ae.Code == "" {
		return nil, false
	}
	return &APIError{Status: status, Code: ae.Code, Message: ae.Message, Details: ae.Details}, true
}

// Request sends a request with an optional body and returns the answer's body; an error
// answer is an *APIError, a failure to connect a *ConnectError.
func (c *Client) Request(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return nil, c.transportError(ctx, fmt.Errorf("read answer of %s %s: %w", method, path, err))
	}
	return data, nil
}

// Get decodes the answer of GET path into out and returns the raw answer too.
func (c *Client) Get(ctx context.Context, path string, out any) ([]byte, error) {
	return c.call(ctx, http.MethodGet, path, nil, out)
}

// Post sends body (JSON or, for /v1/config/check, YAML) and decodes the answer into out
// (unless out is nil); it returns the raw answer too.
func (c *Client) Post(ctx context.Context, path string, body []byte, out any) ([]byte, error) {
	return c.call(ctx, http.MethodPost, path, body, out)
}

func (c *Client) call(ctx context.Context, method, path string, body []byte, out any) ([]byte, error) {
	data, err := c.Request(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	if out != nil && len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return data, fmt.Errorf("decode answer of %s %s: %w", method, path, err)
		}
	}
	return data, nil
}

// Status is GET /v1/status.
func (c *Client) Status(ctx context.Context) (api.Status, error) {
	var st api.Status
	_, err := c.Get(ctx, "/v1/status", &st)
	return st, err
}

// Plugin is GET /v1/plugins/NAME.
func (c *Client) Plugin(ctx context.Context, name string) (api.PluginStatus, error) {
	var p api.PluginStatus
	_, err := c.Get(ctx, "/v1/plugins/"+url.PathEscape(name), &p)
	return p, err
}

// Plugins is GET /v1/plugins.
func (c *Client) Plugins(ctx context.Context) ([]api.PluginStatus, error) {
	var ps []api.PluginStatus
	_, err := c.Get(ctx, "/v1/plugins", &ps)
	return ps, err
}

// Action runs a plugin action. A streaming action's items are passed to item as they
// arrive (the returned result is then nil), or, when item is nil, collected and returned
// as a JSON array once the stream ends. A non-streaming action's result is returned.
func (c *Client) Action(ctx context.Context, plugin, action string, args map[string]string, item func(json.RawMessage) error) (json.RawMessage, error) {
	body, err := json.Marshal(api.ActionRequest{Args: args})
	if err != nil {
		return nil, fmt.Errorf("encode action request: %w", err)
	}
	path := "/v1/plugins/" + url.PathEscape(plugin) + "/actions/" + url.PathEscape(action)
	resp, err := c.send(ctx, http.MethodPost, path, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if isNDJSON(resp) {
		if item != nil {
			return nil, c.readStream(ctx, resp, item)
		}
		var items []json.RawMessage
		err := c.readStream(ctx, resp, func(it json.RawMessage) error {
			items = append(items, append(json.RawMessage(nil), it...))
			return nil
		})
		if err != nil {
			return nil, err
		}
		if items == nil {
			items = []json.RawMessage{}
		}
		return json.Marshal(items)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return nil, c.transportError(ctx, fmt.Errorf("read answer of %s: %w", path, err))
	}
	return data, nil
}

// Events follows GET /v1/events (of the given types; all when empty), passing each event
// as raw JSON to item, until ctx ends or the daemon ends the stream.
func (c *Client) Events(ctx context.Context, types []string, item func(json.RawMessage) error) error {
	path := "/v1/events"
	if len(types) > 0 {
		path += "?type=" + url.QueryEscape(strings.Join(types, ","))
	}
	resp, err := c.send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return c.readStream(ctx, resp, item)
}

// send makes a request and turns connection failures and error answers into errors.
func (c *Client) send(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://sitelinkd"+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if e, ok := apiErrorFrom(resp.StatusCode, data); ok {
		return nil, e
	}
	return nil, &APIError{
		Status:  resp.StatusCode,
		Code:    codeForStatus(resp.StatusCode),
		Message: fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data))),
	}
}

// transportError classifies a failed exchange: cancelled by the caller, or a connection
// problem.
func (c *Client) transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) && !errors.Is(err, context.DeadlineExceeded) {
		return err // the caller cancelled (Ctrl-C)
	}
	return &ConnectError{Socket: c.socket, Err: err}
}

// readStream reads an NDJSON answer, then the Sitelink-Error trailer.
func (c *Client) readStream(ctx context.Context, resp *http.Response, item func(json.RawMessage) error) error {
	rd := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := readLine(rd)
		if len(bytes.TrimSpace(line)) > 0 {
			if ierr := item(json.RawMessage(line)); ierr != nil {
				return ierr
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return &ConnectError{Socket: c.socket, Err: fmt.Errorf("stream broken: %w", err)}
		}
	}
	if v := resp.Trailer.Get("Sitelink-Error"); v != "" {
		if e, ok := apiErrorFrom(0, []byte(v)); ok {
			return e
		}
		return &APIError{Code: "internal", Message: v}
	}
	return nil
}

func readLine(rd *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, isPrefix, err := rd.ReadLine()
		line = append(line, chunk...)
		if len(line) > maxLineBytes {
			return nil, fmt.Errorf("stream line longer than %d bytes", maxLineBytes)
		}
		if err != nil || !isPrefix {
			return line, err
		}
	}
}

func isNDJSON(resp *http.Response) bool {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return mt == "application/x-ndjson"
}

// codeForStatus is the api.Error code of an answer without a JSON body.
func codeForStatus(status int) string {
	switch status {
	case http.StatusNotFound:
		return "not_found"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge:
		return "invalid_argument"
	case http.StatusUnprocessableEntity:
		return "invalid_config"
	case http.StatusConflict:
		return "conflict"
	case http.StatusServiceUnavailable:
		return "unavailable"
	}
	return "internal"
}
