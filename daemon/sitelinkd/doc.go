// Package sitelinkd wires the daemon together: it loads the config, reaps what a crashed
// daemon left, runs the plugin supervisor, serves the admin socket, reloads on SIGHUP
// and stops in order. System is the one struct that holds the daemon's long-lived parts;
// only the sitelinkd command uses it.
package sitelinkd
