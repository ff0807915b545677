// Package testenv builds throwaway network topologies for Sitelink's tests,
// benchmarks and demo, and owns everything it creates until it removes it.
//
// An [Env] creates "hosts" (network namespaces named with the [Prefix] and
// the owning process's identity), "switches" (a bridge in its own namespace),
// veth links between them, addresses, routes and sysctls, and runs processes
// inside hosts with their output captured in a bounded buffer. [Env.Close]
// kills those processes (whole process groups), kills anything else still
// running in its namespaces, deletes the namespaces (and with them every
// veth and bridge) and removes its temporary directory. Namespaces and
// directories left behind by a run that was killed are found by their name
// prefix and removed by [ReapLeftovers], which [New] and [NewEnv] call.
//
// Nothing is ever created in, or changed in, the host's own network
// namespace: veth ends are created directly inside their target namespaces.
//
// The package also starts a private dbus-daemon with a system-bus style
// policy ([StartDBus]) and provides a systemd-style notify socket
// ([NewNotifySocket]), and has helpers to wait for conditions with deadlines
// ([WaitFor], [Eventually]) and to require root and tools ([Require]).
package testenv
