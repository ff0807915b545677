package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/sitelink/sitelink/daemon/api"
)

// routes registers the v1 API.
func (s *Server) routes() {
	read := func(pattern string, h http.HandlerFunc) {
		s.mux.Handle(pattern, s.authorize(AccessReader, s.bounded(h)))
	}
	change := func(pattern string, h http.HandlerFunc) {
		s.mux.Handle(pattern, s.authorize(AccessAdmin, s.bounded(h)))
	}
	read("GET /v1/status", s.getStatus)
	read("GET /v1/plugins", s.getPlugins)
	read("GET /v1/plugins/{name}", s.getPlugin)
	change("POST /v1/plugins/{name}/restart", s.pluginOp("restart", func(ctx context.Context, n string) error { return s.backend.RestartPlugin(ctx, n) }))
	change("POST /v1/plugins/{name}/enable", s.pluginOp("enable", func(ctx context.Context, n string) error { return s.backend.EnablePlugin(ctx, n) }))
	change("POST /v1/plugins/{name}/disable", s.pluginOp("disable", func(ctx context.Context, n string) error { return s.backend.DisablePlugin(ctx, n) }))
	// Actions decide the access they need (Mutating) and whether they stream themselves.
	s.mux.Handle("POST /v1/plugins/{name}/actions/{action}", s.authorize(AccessReader, http.HandlerFunc(s.postAction)))
	change("POST /v1/reload", s.postReload)
	read("GET /v1/config", s.getConfig)
	read("POST /v1/config/check", s.postConfigCheck)
	read("GET /v1/version", s.getVersion)
	s.mux.Handle("GET /v1/events", s.authorize(AccessReader, http.HandlerFunc(s.getEvents)))
}

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) {
	st := s.backend.Status(r.Context())
	if st.Plugins == nil {
		st.Plugins = []api.PluginStatus{}
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) getPlugins(w http.ResponseWriter, r *http.Request) {
	ps := s.backend.Plugins(r.Context())
	if ps == nil {
		ps = []api.PluginStatus{}
	}
	writeJSON(w, http.StatusOK, ps)
}

func (s *Server) getPlugin(w http.ResponseWriter, r *http.Request) {
	p, err := s.backend.Plugin(r.Context(), r.PathValue("name"))
	if err != nil {
		s.writeBackendError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// pluginOp is POST /v1/plugins/NAME/{restart,enable,disable}: it answers the plugin's
// status afterwards (204 when that cannot be read).
func (s *Server) pluginOp(verb string, op func(context.Context, string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, ok := s.readBody(w, r); !ok {
			return
		}
		name := r.PathValue("name")
		s.audit(r, verb+" plugin "+name)
		if err := op(r.Context(), name); err != nil {
			s.writeBackendError(w, r, err)
			return
		}
		p, err := s.backend.Plugin(r.Context(), name)
		if err != nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeJSON(w, http.StatusOK, p)
	}
}

func (s *Server) postReload(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.readBody(w, r); !ok {
		return
	}
	s.audit(r, "reload")
	res, err := s.backend.Reload(r.Context())
	if err != nil {
		s.writeBackendError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.backend.Config(r.Context()))
}

// postConfigCheck checks the YAML in the body, or the daemon's own file when the body is
// empty.
func (s *Server) postConfigCheck(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = nil
	}
	res := s.backend.CheckConfig(r.Context(), body)
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) getVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.backend.Version())
}

// postAction runs a plugin action: readers may run non-mutating ones, admins all.
// Streaming actions answer NDJSON.
func (s *Server) postAction(w http.ResponseWriter, r *http.Request) {
	plugin, action := r.PathValue("name"), r.PathValue("action")
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req api.ActionRequest
	if err := decodeStrict(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, api.Error{Code: CodeInvalidArgument, Message: "malformed action request: " + err.Error()})
		return
	}

	lookup, cancel := context.WithTimeout(r.Context(), s.opts.RequestTimeout)
	spec, err := s.backend.Action(lookup, plugin, action)
	cancel()
	if err != nil {
		s.writeBackendError(w, r, err)
		return
	}
	if spec.Mutating {
		if p, _ := PeerFromContext(r.Context()); p.Access < AccessAdmin {
			writeError(w, http.StatusForbidden, api.Error{Code: CodeForbidden, Message: s.forbidden(p, AccessAdmin)})
			return
		}
	}
	if err := api.CheckArgs(spec, req.Args); err != nil {
		writeError(w, http.StatusBadRequest, api.Error{Code: CodeInvalidArgument, Message: fmt.Sprintf("%s %s: %v", plugin, action, err)})
		return
	}
	if spec.Mutating {
		s.audit(r, api.DescribeAction(plugin, action, req.Args))
	}

	if spec.Streaming {
		s.stream(w, r, func(ctx context.Context, emit func(json.RawMessage) error) error {
			return s.backend.StreamAction(ctx, plugin, action, req.Args, emit)
		})
		return
	}
	s.bounded(func(w http.ResponseWriter, r *http.Request) {
		res, err := s.backend.InvokeAction(r.Context(), plugin, action, req.Args)
		if err != nil {
			s.writeBackendError(w, r, err)
			return
		}
		if len(bytes.TrimSpace(res)) == 0 {
			res = json.RawMessage("null")
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, res); err != nil {
			s.writeBackendError(w, r, fmt.Errorf("%s %s: result is not valid JSON: %w", plugin, action, err))
			return
		}
		writeRawJSON(w, http.StatusOK, buf.Bytes())
	}).ServeHTTP(w, r)
}

// getEvents streams events as NDJSON; ?type=a,b (or repeated type=) filters them.
func (s *Server) getEvents(w http.ResponseWriter, r *http.Request) {
	var types []string
	for _, v := range r.URL.Query()["type"] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" && !slices.Contains(types, t) {
				types = append(types, t)
			}
		}
	}
	s.stream(w, r, func(ctx context.Context, emit func(json.RawMessage) error) error {
		return s.backend.Events(ctx, types, func(ev api.Event) error {
			data, err := json.Marshal(ev)
			if err != nil {
				return fmt.Errorf("encode event: %w", err)
			}
			return emit(data)
		})
	})
}

func (s *Server) audit(r *http.Request, what string) {
	p, _ := PeerFromContext(r.Context())
	s.backend.Audit(r.Context(), p, what)
}

// decodeStrict decodes a JSON body into v; an empty body leaves v as it is. Unknown
// fields are allowed (newer clients), trailing data is not.
func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("unexpected data after the JSON object")
	}
	return nil
}
