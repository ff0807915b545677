package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sitelink/sitelink/daemon/api"
)

// Timeouts of individual reads and writes on a connection.
const (
	bodyReadTimeout   = 30 * time.Second
	streamWriteTimout = 30 * time.Second
	// errorTrailer carries an error that ends a stream after its first item (an
	// api.Error in JSON).
	errorTrailer = "Sitelink-Error"
)

// serveHTTP is the server's handler: the mux, with JSON 404/405 answers and panics turned
// into 500s.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	tw := &trackingWriter{ResponseWriter: w}
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if v == http.ErrAbortHandler {
			panic(v)
		}
		s.log.Error("admin request panicked", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
		if tw.wrote {
			panic(http.ErrAbortHandler) // the answer started: cut the connection
		}
		writeError(tw, http.StatusInternalServerError, api.Error{Code: CodeInternal, Message: fmt.Sprintf("internal error: %v", v)})
	}()
	if _, pattern := s.mux.Handler(r); pattern == "" {
		s.noRoute(tw, r)
		return
	}
	s.mux.ServeHTTP(tw, r)
}

// noRoute answers a request no pattern matches: 405 when the path exists with another
// method, else 404.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	h, _ := s.mux.Handler(r)
	rec := &headerRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	if rec.status == http.StatusMethodNotAllowed {
		allow := rec.header.Get("Allow")
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, api.Error{
			Code:    CodeInvalidArgument,
			Message: fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow),
		})
		return
	}
	writeError(w, http.StatusNotFound, api.Error{Code: CodeNotFound, Message: "no such API endpoint: " + r.URL.Path})
}

// authorize lets requests through when the peer has at least need; it stores the peer,
// with its access decided, in the request context.
func (s *Server) authorize(need Access, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := PeerFromContext(r.Context())
		p.Access = s.accessOf(p)
		if p.Access < need {
			writeError(w, http.StatusForbidden, api.Error{Code: CodeForbidden, Message: s.forbidden(p, need)})
			return
		}
		h.ServeHTTP(w, r.WithContext(withPeer(r.Context(), p)))
	})
}

func (s *Server) accessOf(p Peer) Access {
	if s.opts.Authorize != nil {
		return s.opts.Authorize(p)
	}
	return s.groupPolicy(p)
}

// bounded applies RequestTimeout to a non-streaming request: its context ends and its
// answer must be written by then.
func (s *Server) bounded(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.opts.RequestTimeout)
		defer cancel()
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.opts.RequestTimeout + bodyReadTimeout))
		h(w, r.WithContext(ctx))
	})
}

// readBody reads the whole request body, at most MaxBodyBytes; on failure it has already
// answered (413 or 400).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	// No deadline from now on: an expired one would end the request's context.
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, api.Error{
				Code:    CodeInvalidArgument,
				Message: fmt.Sprintf("request body larger than %d bytes", tooBig.Limit),
			})
			return nil, false
		}
		writeError(w, http.StatusBadRequest, api.Error{Code: CodeInvalidArgument, Message: "reading request body: " + err.Error()})
		return nil, false
	}
	return data, true
}

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, api.Error{Code: CodeInternal, Message: "encoding answer: " + err.Error()})
		return
	}
	writeRawJSON(w, status, data)
}

func writeRawJSON(w http.ResponseWriter, status int, data []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(data)+1))
	w.WriteHeader(status)
	_, _ = w.Write(data)
	_, _ = w.Write([]byte{'\n'})
}

func writeError(w http.ResponseWriter, status int, e api.Error) {
	data, err := json.Marshal(e)
	if err != nil { // cannot happen: strings only
		data = []byte(`{"code":"internal","message":"encoding error"}`)
	}
	writeRawJSON(w, status, data)
}

// writeBackendError answers a backend error with its status and api.Error.
func (s *Server) writeBackendError(w http.ResponseWriter, r *http.Request, err error) {
	status, e := errorFor(err)
	if status == http.StatusInternalServerError {
		s.log.Warn("admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, status, e)
}

// stream answers with an NDJSON stream of the items run emits, until run returns, the
// client goes away or the server shuts down. The status (and headers) are sent with the
// first item, so an error before it is an ordinary error answer; a later error goes into
// the Sitelink-Error trailer.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, run func(ctx context.Context, emit func(json.RawMessage) error) error) {
	ctx, cancel := streamContext(r)
	defer cancel()
	rc := http.NewResponseController(w)

	var (
		mu      sync.Mutex
		started bool
		ended   bool
		buf     bytes.Buffer
	)
	start := func() {
		h := w.Header()
		h.Set("Content-Type", "application/x-ndjson")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		started = true
	}
	emit := func(item json.RawMessage) error {
		mu.Lock()
		defer mu.Unlock()
		if ended {
			return errors.New("stream already ended")
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("stream ended: %w", context.Cause(ctx))
		}
		buf.Reset()
		if err := json.Compact(&buf, item); err != nil {
			return fmt.Errorf("stream item is not valid JSON: %w", err)
		}
		buf.WriteByte('\n')
		if !started {
			start()
		}
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimout))
		if _, err := w.Write(buf.Bytes()); err != nil {
			cancel()
			return fmt.Errorf("stream client gone: %w", err)
		}
		if err := rc.Flush(); err != nil {
			cancel()
			return fmt.Errorf("stream client gone: %w", err)
		}
		return nil
	}

	err := run(ctx, emit)

	mu.Lock()
	defer mu.Unlock()
	ended = true
	if r.Context().Err() != nil {
		return // the client went away; nobody to tell
	}
	if err == nil && ctx.Err() != nil {
		// The stream was cut by the shutdown.
		err = fmt.Errorf("sitelinkd is shutting down: %w", ErrUnavailable)
	} else if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = fmt.Errorf("sitelinkd is shutting down: %w", ErrUnavailable)
	}
	if err == nil {
		if !started {
			start()
		}
		return
	}
	status, e := errorFor(err)
	if status == http.StatusInternalServerError {
		s.log.Warn("admin stream failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if !started {
		writeError(w, status, e)
		return
	}
	data, _ := json.Marshal(e)
	_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimout))
	w.Header().Set(http.TrailerPrefix+errorTrailer, asciiOnly(string(data)))
}

// asciiOnly escapes non-ASCII runes of a JSON text as \uXXXX so that it is a safe header
// value.
func asciiOnly(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf:
			b.WriteRune(r)
		case r > 0xFFFF:
			r -= 0x10000
			fmt.Fprintf(&b, `\u%04x\u%04x`, 0xD800+(r>>10), 0xDC00+(r&0x3FF))
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

// trackingWriter remembers whether the answer started.
type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (t *trackingWriter) WriteHeader(code int) {
	t.wrote = true
	t.ResponseWriter.WriteHeader(code)
}

func (t *trackingWriter) Write(b []byte) (int, error) {
	t.wrote = true
	return t.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (t *trackingWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// Flush implements http.Flusher for handlers that assert it directly.
func (t *trackingWriter) Flush() {
	t.wrote = true
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// headerRecorder captures what ServeMux's own 404/405 handlers answer.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header { return h.header }
func (h *headerRecorder) WriteHeader(code int) {
	if h.status == 0 {
		h.status = code
	}
}
func (h *headerRecorder) Write(b []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return len(b), nil
}
