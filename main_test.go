package openvair_test

import (
	"os"
	"testing"

	// The package's tests use every driver and store; a program imports those it uses.
	_ "github.com/openvair/openvair/driver/libvirt" // registers the "libvirt" hypervisor
	_ "github.com/openvair/openvair/driver/localfs" // registers the "localfs" storage backend
	_ "github.com/openvair/openvair/driver/nfs"     // registers the "nfs" storage backend
	"github.com/openvair/openvair/internal/testenv/pg"
	_ "github.com/openvair/openvair/repo/sql" // registers the "sqlite:", "postgres:" and "postgresql:" stores
)

func TestMain(m *testing.M) { os.Exit(pg.Main(m)) }
