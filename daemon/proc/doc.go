// Package proc starts plugin processes with least privilege and finds the ones a crashed
// daemon left behind.
//
// When sitelinkd runs as root, a plugin is not exec'd directly: sitelinkd re-executes
// itself in a tiny launcher mode (ExecMain) that, on one locked thread, drops every
// capability the plugin did not declare from the bounding set, switches to the plugin's
// user keeping the declared capabilities as ambient ones (Linux ≥ 4.3), re-arms the
// parent-death signal that the credential change cleared, and execs the plugin. On a
// kernel without ambient capabilities (CentOS 7's 3.10) the plugin stays root with every
// other capability gone from its bounding, permitted and effective sets.
package proc
