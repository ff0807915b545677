package supervisor

import (
	"context"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sitelink/sitelink/plugins/sdk"
	"github.com/sitelink/sitelink/plugins/sdk/pluginpb"
)

// hostService serves the Host API to one plugin. The source of every event it publishes
// is the plugin's name, whatever the plugin claims.
type hostService struct {
	pluginpb.UnimplementedHostServer
	sup  *Supervisor
	name string
}

func newHostService(s *Supervisor, name string) *hostService {
	return &hostService{sup: s, name: name}
}

func (h *hostService) Publish(_ context.Context, req *pluginpb.PublishRequest) (*pluginpb.PublishResponse, error) {
	if req.GetEvent() == nil || req.GetEvent().GetType() == "" {
		return nil, status.Error(codes.InvalidArgument, "event without a type")
	}
	ev := sdk.EventFromProto(req.GetEvent())
	ev.Source = h.name
	attrs := []any{"event", ev.Type}
	for k, v := range ev.Attrs {
		attrs = append(attrs, k, v)
	}
	h.sup.opts.Logger.With("plugin", h.name).Info("event: "+ev.Message, attrs...)
	h.sup.opts.Bus.Publish(ev)
	return &pluginpb.PublishResponse{}, nil
}

func (h *hostService) Subscribe(req *pluginpb.SubscribeRequest, stream pluginpb.Host_SubscribeServer) error {
	events := h.sup.opts.Bus.Subscribe(stream.Context(), req.GetTypes()...)
	// Registered: tell the plugin, whose Subscribe waits for these headers.
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	for ev := range events {
		if err := stream.Send(sdk.EventToProto(ev)); err != nil {
			return err
		}
	}
	return nil
}

func (h *hostService) sink() (*sdk.Client, error) {
	c := h.sup.LogSink()
	if c == nil {
		return nil, status.Error(codes.Unavailable, "no log cache plugin is running")
	}
	return c, nil
}

func (h *hostService) AppendLogs(ctx context.Context, req *pluginpb.AppendRequest) (*pluginpb.AppendResponse, error) {
	c, err := h.sink()
	if err != nil {
		return nil, err
	}
	return c.AppendLogs(ctx, req)
}

// AppendLogsStream relays a plugin's append stream to the log sink's, keeping many
// batches in flight: requests and acknowledgements flow independently, in order.
func (h *hostService) AppendLogsStream(stream pluginpb.Host_AppendLogsStreamServer) error {
	c, err := h.sink()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	out, err := c.OpenLogSinkStream(ctx)
	if err != nil {
		return status.Errorf(codes.Unavailable, "open log sink stream: %v", err)
	}
	upstream := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				_ = out.CloseSend()
				upstream <- nil
				return
			}
			if err := out.Send(req); err != nil {
				upstream <- status.Errorf(codes.Unavailable, "log sink: %v", err)
				return
			}
		}
	}()
	for {
		resp, err := out.Recv()
		if err == io.EOF {
			return <-upstream
		}
		if err != nil {
			return status.Errorf(codes.Unavailable, "log sink: %v", err)
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}
