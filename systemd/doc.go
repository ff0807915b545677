// Package systemd holds sitelinkd's systemd integration as shipped files: the unit
// (sitelinkd.service, systemd 219 and later), the drop-in with newer hardening
// (sitelinkd.service.d/50-hardening.conf) and the options file (sitelinkd.sysconfig,
// installed as /etc/sysconfig/sitelinkd). It has no Go code of its own; its tests check
// the unit's keys against systemd 219, run `systemd-analyze verify`, and boot a Debian 12
// container with systemd-nspawn to prove the unit under real systemd: start after READY,
// the STATUS= line, reload, the watchdog, clean stop and cleanup, the journal's fields and
// the D-Bus service on the system bus.
package systemd
