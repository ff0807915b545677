// Package supervisor runs sitelinkd's plugins: it launches each one with least privilege,
// negotiates the API version, initialises, configures and starts it in dependency order,
// watches it (exit and health), restarts it with exponential backoff until it fails too
// often, gates `active_when: master` plugins on the HA role, and stops everything in
// reverse order. Its input is a whole desired state (Apply), applied idempotently.
package supervisor
