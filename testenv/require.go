package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// InCI reports whether the environment variable CI says the tests run in
// continuous integration ("true" or "1"), where missing requirements are
// failures rather than reasons to skip.
func InCI() bool {
	v := strings.TrimSpace(os.Getenv("CI"))
	return strings.EqualFold(v, "true") || v == "1"
}

// Require needs root and each of tools in PATH. When something is missing it
// calls t.Fatal if [InCI], and t.Skip otherwise.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	require(t, true, tools)
}

// RequireTools is [Require] without the need for root.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	require(t, false, tools)
}

func require(t testing.TB, root bool, tools []string) {
	t.Helper()
	var missing []string
	if root && os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "testenv: missing requirements: " + strings.Join(missing, ", ")
	if InCI() {
		t.Fatal(msg + " (CI=true, so this is a failure)")
	}
	t.Skip(msg)
}
