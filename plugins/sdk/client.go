package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sitelink/sitelink/plugins/sdk/pluginpb"
)

// This file is the host's side of the contract: sitelinkd uses Client to drive a plugin.

// ErrPluginGone is returned by Client calls when the plugin process has exited or its
// connection closed, so the supervisor can tell a dead plugin from a failing call.
var ErrPluginGone = errors.New("plugin process is gone")

// Client is the host's handle on one plugin process.
type Client struct {
	broker *plugin.GRPCBroker
	pb     pluginpb.PluginClient
	sink   pluginpb.LogSinkClient

	mu         sync.Mutex
	hostServer *grpc.Server
}

func newClient(broker *plugin.GRPCBroker, c *grpc.ClientConn) *Client {
	return &Client{broker: broker, pb: pluginpb.NewPluginClient(c), sink: pluginpb.NewLogSinkClient(c)}
}

// NewClientForConn wraps an existing connection (tests, sdktest).
func NewClientForConn(broker *plugin.GRPCBroker, c *grpc.ClientConn) *Client {
	return newClient(broker, c)
}

// InitOptions are the facts the host tells a plugin at Init.
type InitOptions struct {
	Name        string
	APIVersion  int
	StateDir    string
	RuntimeDir  string
	HostVersion string
}

// Init serves host on the broker and calls the plugin's Init.
func (c *Client) Init(ctx context.Context, opts InitOptions, host pluginpb.HostServer) error {
	id := c.broker.NextId()
	ready := make(chan struct{})
	go c.broker.AcceptAndServe(id, func(o []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(o...)
		pluginpb.RegisterHostServer(s, host)
		c.mu.Lock()
		c.hostServer = s
		c.mu.Unlock()
		close(ready)
		return s
	})
	select {
	case <-ready:
	case <-ctx.Done():
		return fmt.Errorf("serve host services: %w", ctx.Err())
	}
	_, err := c.pb.Init(ctx, &pluginpb.InitRequest{Name: opts.Name, ApiVersion: int32(opts.APIVersion),
		HostBrokerId: id, StateDir: opts.StateDir, RuntimeDir: opts.RuntimeDir, HostVersion: opts.HostVersion})
	return wrap("init", err)
}

// Close stops serving host services to the plugin.
func (c *Client) Close() {
	c.mu.Lock()
	s := c.hostServer
	c.mu.Unlock()
	if s != nil {
		s.Stop()
	}
}

// Info asks the plugin to describe itself.
func (c *Client) Info(ctx context.Context) (*pluginpb.InfoResponse, error) {
	r, err := c.pb.Info(ctx, &pluginpb.InfoRequest{})
	return r, wrap("info", err)
}

// Configure sends the whole config; field errors come back in FieldErrors.
func (c *Client) Configure(ctx context.Context, configJSON []byte, validateOnly bool) error {
	r, err := c.pb.Configure(ctx, &pluginpb.ConfigureRequest{ConfigJson: configJSON, ValidateOnly: validateOnly})
	if err != nil {
		return wrap("configure", err)
	}
	if len(r.GetErrors()) == 0 {
		return nil
	}
	fes := make(FieldErrors, 0, len(r.GetErrors()))
	for _, e := range r.GetErrors() {
		fes = append(fes, FieldError{Path: e.GetPath(), Message: e.GetMessage()})
	}
	return fes
}

// Start starts the plugin's work.
func (c *Client) Start(ctx context.Context, role Role) error {
	_, err := c.pb.Start(ctx, &pluginpb.StartRequest{Role: RoleToProto(role)})
	return wrap("start", err)
}

// Stop stops the plugin's work before ctx's deadline.
func (c *Client) Stop(ctx context.Context) error {
	_, err := c.pb.Stop(ctx, &pluginpb.StopRequest{})
	return wrap("stop", err)
}

// Status asks for the plugin's status.
func (c *Client) Status(ctx context.Context) (*pluginpb.StatusResponse, error) {
	r, err := c.pb.Status(ctx, &pluginpb.StatusRequest{})
	return r, wrap("status", err)
}

// Metrics returns the plugin's metrics in the Prometheus text format.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	r, err := c.pb.Metrics(ctx, &pluginpb.MetricsRequest{})
	return r.GetText(), wrap("metrics", err)
}

// InvokeAction runs a non-streaming action and returns its JSON result.
func (c *Client) InvokeAction(ctx context.Context, name string, args map[string]string) ([]byte, error) {
	r, err := c.pb.InvokeAction(ctx, &pluginpb.ActionRequest{Name: name, Args: args})
	return r.GetResultJson(), wrap("action "+name, err)
}

// StreamAction runs a streaming action, calling emit for each JSON item until the action
// ends (nil) or ctx is cancelled.
func (c *Client) StreamAction(ctx context.Context, name string, args map[string]string, emit func([]byte) error) error {
	s, err := c.pb.StreamAction(ctx, &pluginpb.ActionRequest{Name: name, Args: args})
	if err != nil {
		return wrap("action "+name, err)
	}
	for {
		chunk, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return wrap("action "+name, err)
		}
		if err := emit(chunk.GetJson()); err != nil {
			return err
		}
	}
}

// Cleanup asks the plugin to remove what it left in the kernel.
func (c *Client) Cleanup(ctx context.Context) ([]string, error) {
	r, err := c.pb.Cleanup(ctx, &pluginpb.CleanupRequest{})
	return r.GetRemoved(), wrap("cleanup", err)
}

// AppendLogs forwards records to a plugin that provides "logsink".
func (c *Client) AppendLogs(ctx context.Context, req *pluginpb.AppendRequest) (*pluginpb.AppendResponse, error) {
	r, err := c.sink.Append(ctx, req)
	return r, wrap("append logs", err)
}

// OpenLogSinkStream opens a LogSink.AppendStream to a plugin that provides "logsink".
func (c *Client) OpenLogSinkStream(ctx context.Context) (pluginpb.LogSink_AppendStreamClient, error) {
	s, err := c.sink.AppendStream(ctx)
	return s, wrap("append logs stream", err)
}

// wrap names the call and maps a dead transport to ErrPluginGone. Errors keep their
// gRPC status so callers can read codes.
func wrap(call string, err error) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable:
			return fmt.Errorf("%s: %w (%s)", call, ErrPluginGone, st.Message())
		case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition:
			return &CallError{Call: call, Code: st.Code(), Msg: st.Message()}
		}
		return &CallError{Call: call, Code: st.Code(), Msg: st.Message()}
	}
	return fmt.Errorf("%s: %w", call, err)
}

// CallError is a plugin call that the plugin answered with an error.
type CallError struct {
	Call string
	Code codes.Code
	Msg  string
}

func (e *CallError) Error() string { return e.Call + ": " + e.Msg }

// GRPCStatus keeps the code when the error crosses another gRPC hop.
func (e *CallError) GRPCStatus() *status.Status { return status.New(e.Code, e.Msg) }
