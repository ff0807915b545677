// Package admin owns sitelinkd's admin socket: an HTTP/JSON server (API version 1, paths
// under /v1) on a unix socket, usually /run/sitelink/admin.sock. It authorizes every
// request by the peer's credentials (SO_PEERCRED): root and members of the admin group
// (sitelink-admin) may change things, members of the reader group (sitelink) may read,
// everyone else is refused. The daemon plugs in through the Backend interface; extra
// handlers (/metrics, /healthz) can be added with Server.Handle and served on further
// listeners (TCP) with Server.ServeListener.
//
// Wire types are in package api. Errors are api.Error bodies with a stable Code; the
// backend reports them with the sentinel errors of this package (ErrNotFound, …) and
// ConfigError, wrapped or not. Streams (streaming plugin actions, /v1/events) are NDJSON:
// one JSON value per line, flushed per item; an error after the stream started is sent as
// the HTTP trailer Sitelink-Error (an api.Error in JSON).
package admin
