package sdk

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/sitelink/sitelink/plugins/sdk/metrics"
	"github.com/sitelink/sitelink/plugins/sdk/pluginpb"
)

// Host is what sitelinkd offers a plugin.
type Host interface {
	// Name is the plugin's name in the daemon's config.
	Name() string
	// StateDir is a persistent directory of the plugin's own (keys, caches).
	StateDir() string
	// RuntimeDir is a directory under /run of the plugin's own.
	RuntimeDir() string
	// Logger logs structured lines that the daemon re-emits with plugin=NAME.
	Logger() *slog.Logger
	// Metrics is the registry whose metrics the daemon exports with a plugin label.
	Metrics() *metrics.Registry
	// Publish sends an event to the other plugins and the daemon.
	Publish(ctx context.Context, ev Event) error
	// Subscribe delivers events of the given types (all when none) until ctx ends;
	// retained events come first. Every event published after Subscribe returns is
	// delivered (unless the subscriber falls 256 events behind). The channel is closed
	// when the subscription ends.
	Subscribe(ctx context.Context, types ...string) (<-chan Event, error)
	// AppendLogs appends records to the appliance's log cache and returns once the
	// cache has them as durably as its policy says.
	AppendLogs(ctx context.Context, records []LogRecord) (first, last uint64, err error)
	// OpenLogStream opens a stream for many AppendLogs calls in a row.
	OpenLogStream(ctx context.Context) (*LogStream, error)
}

// remoteHost is the Host a served plugin gets: its calls go to sitelinkd over gRPC.
type remoteHost struct {
	name, stateDir, runtimeDir string
	logger                     *slog.Logger
	registry                   *metrics.Registry
	client                     pluginpb.HostClient
}

func (h *remoteHost) Name() string               { return h.name }
func (h *remoteHost) StateDir() string           { return h.stateDir }
func (h *remoteHost) RuntimeDir() string         { return h.runtimeDir }
func (h *remoteHost) Logger() *slog.Logger       { return h.logger }
func (h *remoteHost) Metrics() *metrics.Registry { return h.registry }

func (h *remoteHost) Publish(ctx context.Context, ev Event) error {
	if _, err := h.client.Publish(ctx, &pluginpb.PublishRequest{Event: EventToProto(ev)}); err != nil {
		return fmt.Errorf("publish %s event: %w", ev.Type, err)
	}
	return nil
}

func (h *remoteHost) Subscribe(ctx context.Context, types ...string) (<-chan Event, error) {
	stream, err := h.client.Subscribe(ctx, &pluginpb.SubscribeRequest{Types: types})
	if err != nil {
		return nil, fmt.Errorf("subscribe to %v: %w", types, err)
	}
	// The host sends the headers once the subscription is registered: after this no
	// event published from now on is missed.
	if _, err := stream.Header(); err != nil {
		return nil, fmt.Errorf("subscribe to %v: %w", types, err)
	}
	ch := make(chan Event, 64)
	go func() {
		defer close(ch)
		for {
			pe, err := stream.Recv()
			if err != nil {
				if err != io.EOF && ctx.Err() == nil {
					h.logger.Warn("event subscription ended", "types", types, "error", err)
				}
				return
			}
			select {
			case ch <- EventFromProto(pe):
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

func (h *remoteHost) AppendLogs(ctx context.Context, records []LogRecord) (uint64, uint64, error) {
	resp, err := h.client.AppendLogs(ctx, &pluginpb.AppendRequest{Records: LogRecordsToProto(records)})
	if err != nil {
		return 0, 0, fmt.Errorf("append %d log records: %w", len(records), err)
	}
	return resp.GetFirstSeq(), resp.GetLastSeq(), nil
}

func (h *remoteHost) OpenLogStream(ctx context.Context) (*LogStream, error) {
	s, err := h.client.AppendLogsStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("open log stream: %w", err)
	}
	return &LogStream{stream: s}, nil
}

// LogStream appends batches of records over one stream. Append sends a batch and waits
// for its acknowledgement; Send and Ack pipeline: many batches may be in flight (the
// log cache acknowledges them in order, each once durable by its policy), which is how a
// busy producer reaches full throughput under the interval policy. A LogStream is for
// one goroutine at a time (or one sending and one acknowledging).
type LogStream struct {
	send   sync.Mutex
	recv   sync.Mutex
	stream pluginpb.Host_AppendLogsStreamClient
}

// Append sends one batch and waits for its acknowledgement (no other batch may be in
// flight).
func (s *LogStream) Append(records []LogRecord) (first, last uint64, err error) {
	if err := s.Send(records); err != nil {
		return 0, 0, err
	}
	return s.Ack()
}

// Send sends one batch without waiting.
func (s *LogStream) Send(records []LogRecord) error {
	s.send.Lock()
	defer s.send.Unlock()
	if err := s.stream.Send(&pluginpb.AppendRequest{Records: LogRecordsToProto(records)}); err != nil {
		return fmt.Errorf("send %d log records: %w", len(records), err)
	}
	return nil
}

// Ack waits for the acknowledgement of the oldest batch sent and not yet acknowledged.
func (s *LogStream) Ack() (first, last uint64, err error) {
	s.recv.Lock()
	defer s.recv.Unlock()
	resp, err := s.stream.Recv()
	if err != nil {
		return 0, 0, fmt.Errorf("log records not acknowledged: %w", err)
	}
	return resp.GetFirstSeq(), resp.GetLastSeq(), nil
}

// Close ends the stream.
func (s *LogStream) Close() error { return s.stream.CloseSend() }
