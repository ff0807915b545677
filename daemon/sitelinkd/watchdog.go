package sitelinkd

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// TestHooksEnv, set to 1, enables test hooks: SIGUSR2 then blocks the daemon's main loop
// forever, so tests can check that the systemd watchdog kills and restarts a hung daemon.
const TestHooksEnv = "SITELINK_TEST_HOOKS"

// watchdog pings systemd at half of WatchdogSec, and only while the main loop answers
// (loopPing) and the supervisor's state can be read; a hung daemon stops pinging and
// systemd restarts it. Without WatchdogSec it does nothing.
func (s *System) watchdog(ctx context.Context, loopPing chan<- chan struct{}) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	period := interval / 2
	s.log.Info("systemd watchdog enabled", "interval", interval.String(), "ping_every", period.String())
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.alive(ctx, loopPing, period) {
			s.notify.send("WATCHDOG=1")
		} else {
			s.log.Error("main loop or supervisor not answering: withholding the watchdog ping", "event", "watchdog")
		}
	}
}

// alive checks the main loop and the supervisor within limit.
func (s *System) alive(ctx context.Context, loopPing chan<- chan struct{}, limit time.Duration) bool {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	reply := make(chan struct{})
	select {
	case loopPing <- reply:
	case <-deadline.C:
		return false
	case <-ctx.Done():
		return false
	}
	select {
	case <-reply:
	case <-deadline.C:
		return false
	}
	sup := make(chan struct{})
	go func() { s.sup.Snapshot(); close(sup) }()
	select {
	case <-sup:
		return true
	case <-deadline.C:
		return false
	}
}

// testHang returns a channel that fires on SIGUSR2 when test hooks are on.
func testHang() <-chan os.Signal {
	if os.Getenv(TestHooksEnv) != "1" {
		return nil
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR2)
	return ch
}
