// Package testenv holds what every integration test harness shares: the rule that a missing real component
// skips a test on a developer machine but fails it in CI (OPENVAIR_REQUIRE_ALL=1).
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireAll reports whether integration suites must fail instead of skipping (CI sets OPENVAIR_REQUIRE_ALL=1).
func RequireAll() bool { return os.Getenv("OPENVAIR_REQUIRE_ALL") == "1" }

// Unavailable skips the test with the reason, or fails it when RequireAll is set.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if RequireAll() {
		t.Fatalf("required component unavailable (OPENVAIR_REQUIRE_ALL=1): "+format, args...)
	}
	t.Skipf("skipping, component unavailable: "+format, args...)
}

// LookPath returns the path of a binary, or calls Unavailable when it is missing.
func LookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "%s not installed", name)
	}
	return p
}

// RequireRoot calls Unavailable unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root")
	}
}
