// Package packaging holds no code: it is the home of Sitelink's packaging files (the
// D-Bus policy, tmpfiles.d entry, sitelinkd(8), rpmlint configuration, the build, repo
// and check scripts, and install.sh, the operator's one command) and of the tests that
// check the RPMs built from rpm/sitelink.spec with real tools: rpmbuild, rpm queries
// against what the spec means, rpm 4.11 compatibility, rpmlint, install / upgrade /
// erase into a Debian rootfs with scriptlets running, a systemd-nspawn boot that starts
// sitelinkd from the installed unit and runs install.sh against a local repository, and
// the binaries under an old kernel's (Linux 3.10) system call set.
//
// Run the tests as root: go test -count=1 ./packaging/ (make build first, or they run it).
package packaging
