package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/testenv"
)

// TestLinksOnlyWhatItImports: a program on "memory:" with LocalFS links none of the other drivers and
// stores, nor what only they need (the job queue, the HTTP server's framework, the span exporters).
// Checked with go list, which compiles nothing.
func TestLinksOnlyWhatItImports(t *testing.T) {
	gobin, err := exec.LookPath("go") // go test puts its own GOROOT/bin first in PATH
	if err != nil {
		testenv.Unavailable(t, "go tool not found: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, gobin, "list", "-deps", ".").Output()
	if ee, ok := err.(*exec.ExitError); ok {
		t.Fatalf("go list: %v\n%s", err, ee.Stderr)
	}
	require.NoError(t, err)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/openvair/openvair/driver/localfs")
	require.Contains(t, deps, "github.com/openvair/openvair/repo/memory")

	banned := []string{
		"github.com/digitalocean/go-libvirt",
		"github.com/vmware/go-nfs-client",
		"github.com/willscott/go-nfs",
		"github.com/uptrace/bun/driver/pgdriver",
		"github.com/jackc/pgx",
		"modernc.org/sqlite",
		"github.com/riverqueue/river",
		"github.com/danielgtaylor/huma",
		// Measurements: the SDK links the Prometheus client and the OpenTelemetry API, never an exporter.
		"go.opentelemetry.io/otel/sdk",
		"go.opentelemetry.io/otel/exporters",
		"google.golang.org/grpc",
	}
	for _, dep := range deps {
		for _, b := range banned {
			if dep == b || strings.HasPrefix(dep, b+"/") {
				t.Errorf("links %s (see: go list -deps -f '{{.ImportPath}}: {{join .Imports \" \"}}' .)", dep)
			}
		}
	}
}
