package sitelinkd

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// notifier speaks systemd's notify protocol; outside systemd every call does nothing.
type notifier struct {
	log *slog.Logger
}

func newNotifier(log *slog.Logger) *notifier { return &notifier{log: log} }

func (n *notifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Warn("systemd notify failed", "error", err)
	}
}

func (n *notifier) ready(status string) { n.send("READY=1\nSTATUS=" + status) }
func (n *notifier) status(line string)  { n.send("STATUS=" + line) }
func (n *notifier) stopping()           { n.send("STOPPING=1\nSTATUS=stopping") }

// reloading tells systemd a reload began, with the monotonic time newer systemd wants.
func (n *notifier) reloading() {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	usec := ts.Nano() / int64(time.Microsecond)
	n.send(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d\nSTATUS=reloading", usec))
}
