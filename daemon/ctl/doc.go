// Package ctl is sitelinkctl: the cobra command tree that operators use to control
// sitelinkd, and the HTTP client of the daemon's admin socket (see package admin for the
// server and package api for the JSON types).
//
// Commands print tables and text by default and the API's JSON with --json; their exit
// codes are the Exit* constants. Besides the fixed commands, "sitelinkctl PLUGIN ACTION"
// runs any plugin action: the action's arguments become flags after asking the daemon
// for the action's declaration.
package ctl
