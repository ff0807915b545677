package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sitelink/sitelink/plugins/sdk/metrics"
	"github.com/sitelink/sitelink/plugins/sdk/pluginpb"
)

// Handshake is the go-plugin handshake shared by sitelinkd and its plugins. The magic
// cookie only keeps a plugin from being started by hand by mistake; it is no security.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "SITELINK_PLUGIN",
	MagicCookieValue: "6f1c3a5e-sitelink-plugin-v1",
}

// InfoFlag, as a plugin binary's last argument, makes it print its Info as JSON and exit.
// The host runs it so to learn a plugin's capabilities and API versions before starting it.
const InfoFlag = "--sitelink-plugin-info"

// provides lists the optional services p serves.
func provides(p Plugin) []string {
	if _, ok := p.(LogSink); ok {
		return []string{"logsink"}
	}
	return nil
}

// PluginKey is the name the plugin is dispensed under.
const PluginKey = "plugin"

// Serve runs p as a plugin process; it is a plugin's whole main. It returns when the
// host disconnects. Run by hand (not by sitelinkd), it says so and exits.
func Serve(p Plugin) {
	if len(os.Args) >= 2 && os.Args[len(os.Args)-1] == InfoFlag {
		// The host asks what the binary is before it decides how to run it.
		b, err := protojson.Marshal(InfoToProto(p.Info(), provides(p)))
		if err != nil {
			fmt.Fprintln(os.Stderr, "encode plugin info:", err)
			os.Exit(1)
		}
		os.Stdout.Write(append(b, '\n'))
		os.Exit(0)
	}
	logger := newPluginLogger(os.Stderr)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: servedPluginSets(p, logger),
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger:           newHCLogAdapter(logger, "go-plugin"),
	})
}

// servedPluginSets announces p under each API version it serves.
func servedPluginSets(p Plugin, logger *loggerPair) map[int]plugin.PluginSet {
	versions := p.Info().APIVersions
	if len(versions) == 0 {
		versions = []int{APIVersion}
	}
	sets := make(map[int]plugin.PluginSet, len(versions))
	for _, v := range versions {
		sets[v] = plugin.PluginSet{PluginKey: &GRPCPlugin{Impl: p, logger: logger}}
	}
	return sets
}

// PluginSets is what the host offers go-plugin: the API versions this SDK speaks.
func PluginSets() map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{APIVersion: {PluginKey: &GRPCPlugin{}}}
}

// GRPCPlugin binds a Plugin to go-plugin's gRPC transport. Impl is set on the plugin
// side only.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl   Plugin
	logger *loggerPair
}

// GRPCServer registers the plugin's services.
func (g *GRPCPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	logger := g.logger
	if logger == nil {
		logger = newPluginLogger(os.Stderr)
	}
	srv := &server{impl: g.Impl, broker: broker, logger: logger, registry: newRegistry()}
	pluginpb.RegisterPluginServer(s, srv)
	if sink, ok := g.Impl.(LogSink); ok {
		pluginpb.RegisterLogSinkServer(s, &sinkServer{sink: sink})
	}
	return nil
}

// GRPCClient returns the host's handle on the plugin.
func (g *GRPCPlugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return newClient(broker, c), nil
}

func newRegistry() *metrics.Registry {
	reg := metrics.NewRegistry()
	reg.MustRegister(metrics.NewProcessCollector())
	return reg
}

// server adapts a Plugin to the Plugin gRPC service.
type server struct {
	pluginpb.UnimplementedPluginServer
	impl     Plugin
	broker   *plugin.GRPCBroker
	logger   *loggerPair
	registry *metrics.Registry

	mu      sync.Mutex // serialises lifecycle calls
	state   pluginpb.State
	host    *remoteHost
	actions map[string]Action
}

func (s *server) Info(context.Context, *pluginpb.InfoRequest) (*pluginpb.InfoResponse, error) {
	return InfoToProto(s.impl.Info(), provides(s.impl)), nil
}

func (s *server) Init(ctx context.Context, req *pluginpb.InitRequest) (*pluginpb.InitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.host != nil {
		return nil, status.Error(codes.FailedPrecondition, "plugin already initialised")
	}
	conn, err := s.broker.Dial(req.GetHostBrokerId())
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "dial host services: %v", err)
	}
	h := &remoteHost{name: req.GetName(), stateDir: req.GetStateDir(), runtimeDir: req.GetRuntimeDir(),
		logger: s.logger.slog, registry: s.registry, client: pluginpb.NewHostClient(conn)}
	s.actions = make(map[string]Action)
	for _, a := range s.impl.Info().Actions {
		s.actions[a.Name] = a
	}
	if err := s.impl.Init(ctx, h); err != nil {
		return nil, toStatus(err)
	}
	s.host = h
	return &pluginpb.InitResponse{}, nil
}

func (s *server) ready() error {
	if s.host == nil {
		return status.Error(codes.FailedPrecondition, "plugin not initialised: call Init first")
	}
	return nil
}

func (s *server) Configure(ctx context.Context, req *pluginpb.ConfigureRequest) (*pluginpb.ConfigureResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return nil, err
	}
	err := s.impl.Configure(ctx, json.RawMessage(req.GetConfigJson()), req.GetValidateOnly())
	if err == nil {
		if !req.GetValidateOnly() && s.state == pluginpb.State_STATE_UNKNOWN {
			s.state = pluginpb.State_STATE_CONFIGURED
		}
		return &pluginpb.ConfigureResponse{}, nil
	}
	var fes FieldErrors
	var fe FieldError
	resp := &pluginpb.ConfigureResponse{}
	switch {
	case errors.As(err, &fes):
		for _, f := range fes {
			resp.Errors = append(resp.Errors, &pluginpb.FieldError{Path: f.Path, Message: f.Message})
		}
	case errors.As(err, &fe):
		resp.Errors = append(resp.Errors, &pluginpb.FieldError{Path: fe.Path, Message: fe.Message})
	default:
		resp.Errors = append(resp.Errors, &pluginpb.FieldError{Message: err.Error()})
	}
	return resp, nil
}

func (s *server) Start(ctx context.Context, req *pluginpb.StartRequest) (*pluginpb.StartResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return nil, err
	}
	if s.state == pluginpb.State_STATE_RUNNING {
		return &pluginpb.StartResponse{}, nil
	}
	if err := s.impl.Start(ctx, RoleFromProto(req.GetRole())); err != nil {
		return nil, toStatus(err)
	}
	s.state = pluginpb.State_STATE_RUNNING
	return &pluginpb.StartResponse{}, nil
}

func (s *server) Stop(ctx context.Context, _ *pluginpb.StopRequest) (*pluginpb.StopResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return nil, err
	}
	if s.state != pluginpb.State_STATE_RUNNING {
		return &pluginpb.StopResponse{}, nil
	}
	err := s.impl.Stop(ctx)
	s.state = pluginpb.State_STATE_STOPPED
	if err != nil {
		return nil, toStatus(err)
	}
	return &pluginpb.StopResponse{}, nil
}

func (s *server) currentState() pluginpb.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

func (s *server) Status(ctx context.Context, _ *pluginpb.StatusRequest) (*pluginpb.StatusResponse, error) {
	st := s.impl.Status(ctx)
	resp := &pluginpb.StatusResponse{State: s.currentState(), Health: healthToProto(st.Health),
		Reasons: st.Reasons, Summary: st.Summary, Counters: st.Counters}
	if st.Details != nil {
		b, err := json.Marshal(st.Details)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encode status details: %v", err)
		}
		resp.DetailsJson = b
	}
	return resp, nil
}

func (s *server) Metrics(context.Context, *pluginpb.MetricsRequest) (*pluginpb.MetricsResponse, error) {
	var buf bytes.Buffer
	if err := s.registry.WriteText(&buf); err != nil {
		return nil, status.Errorf(codes.Internal, "gather metrics: %v", err)
	}
	return &pluginpb.MetricsResponse{Text: buf.Bytes()}, nil
}

func (s *server) action(req *pluginpb.ActionRequest, streaming bool) (Action, Args, error) {
	s.mu.Lock()
	a, ok := s.actions[req.GetName()]
	ready := s.ready()
	s.mu.Unlock()
	if ready != nil {
		return Action{}, Args{}, ready
	}
	if !ok {
		return Action{}, Args{}, status.Errorf(codes.NotFound, "no action %q", req.GetName())
	}
	if streaming && a.Stream == nil {
		return Action{}, Args{}, status.Errorf(codes.InvalidArgument, "action %q does not stream", a.Name)
	}
	if !streaming && a.Run == nil {
		return Action{}, Args{}, status.Errorf(codes.InvalidArgument, "action %q streams: use StreamAction", a.Name)
	}
	args, err := ParseArgs(a.Args, req.GetArgs(), time.Now())
	if err != nil {
		return Action{}, Args{}, status.Error(codes.InvalidArgument, err.Error())
	}
	return a, args, nil
}

func (s *server) InvokeAction(ctx context.Context, req *pluginpb.ActionRequest) (*pluginpb.ActionResponse, error) {
	a, args, err := s.action(req, false)
	if err != nil {
		return nil, err
	}
	res, err := a.Run(ctx, args)
	if err != nil {
		return nil, toStatus(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode result of %s: %v", a.Name, err)
	}
	return &pluginpb.ActionResponse{ResultJson: b}, nil
}

func (s *server) StreamAction(req *pluginpb.ActionRequest, stream pluginpb.Plugin_StreamActionServer) error {
	a, args, err := s.action(req, true)
	if err != nil {
		return err
	}
	err = a.Stream(stream.Context(), args, func(item any) error {
		b, err := json.Marshal(item)
		if err != nil {
			return fmt.Errorf("encode item: %w", err)
		}
		return stream.Send(&pluginpb.ActionChunk{Json: b})
	})
	if err != nil && stream.Context().Err() == nil {
		return toStatus(err)
	}
	return nil
}

func (s *server) Cleanup(ctx context.Context, _ *pluginpb.CleanupRequest) (*pluginpb.CleanupResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return nil, err
	}
	removed, err := s.impl.Cleanup(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pluginpb.CleanupResponse{Removed: removed}, nil
}

// toStatus keeps gRPC status errors and turns argument errors into InvalidArgument.
// Unavailable, from a call the plugin made (a host service), becomes
// FailedPrecondition: the host reads Unavailable as the plugin itself being gone.
func toStatus(err error) error {
	if st, ok := status.FromError(err); ok {
		if st.Code() == codes.Unavailable {
			return status.Error(codes.FailedPrecondition, err.Error())
		}
		return err
	}
	var ae *ArgError
	var fes FieldErrors
	switch {
	case errors.As(err, &ae), errors.As(err, &fes):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

// sinkServer serves LogSink for a plugin that implements it.
type sinkServer struct {
	pluginpb.UnimplementedLogSinkServer
	sink LogSink
}

func (s *sinkServer) Append(ctx context.Context, req *pluginpb.AppendRequest) (*pluginpb.AppendResponse, error) {
	first, last, err := s.sink.AppendLogs(ctx, LogRecordsFromProto(req.GetRecords()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pluginpb.AppendResponse{FirstSeq: first, LastSeq: last}, nil
}

func (s *sinkServer) AppendStream(stream pluginpb.LogSink_AppendStreamServer) error {
	return serveAppendStream(stream.Context(), stream.Recv, stream.Send,
		func(ctx context.Context, req *pluginpb.AppendRequest) (*pluginpb.AppendResponse, error) {
			first, last, err := s.sink.AppendLogs(ctx, LogRecordsFromProto(req.GetRecords()))
			if err != nil {
				return nil, toStatus(err)
			}
			return &pluginpb.AppendResponse{FirstSeq: first, LastSeq: last}, nil
		})
}

// MaxAppendsInFlight bounds the batches of one append stream being stored at once.
const MaxAppendsInFlight = 64

// serveAppendStream runs the appends of a stream concurrently (up to MaxAppendsInFlight,
// so a producer can pipeline) and answers them in order.
func serveAppendStream(ctx context.Context, recv func() (*pluginpb.AppendRequest, error),
	send func(*pluginpb.AppendResponse) error,
	appendFn func(context.Context, *pluginpb.AppendRequest) (*pluginpb.AppendResponse, error)) error {
	type result struct {
		resp *pluginpb.AppendResponse
		err  error
	}
	queue := make(chan chan result, MaxAppendsInFlight)
	readErr := make(chan error, 1)
	go func() {
		defer close(queue)
		for {
			req, err := recv()
			if err != nil {
				readErr <- err
				return
			}
			ch := make(chan result, 1)
			select {
			case queue <- ch:
			case <-ctx.Done():
				return
			}
			go func() {
				resp, err := appendFn(ctx, req)
				ch <- result{resp, err}
			}()
		}
	}()
	for ch := range queue {
		r := <-ch
		if r.err != nil {
			return r.err
		}
		if err := send(r.resp); err != nil {
			return err
		}
	}
	return nil // the producer closed its side (or went away)
}
