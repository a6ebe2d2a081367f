package storage_test

import (
	"os"
	"testing"

	"github.com/openvair/openvair/internal/testenv/pg"
)

// TestMain stops the throwaway PostgreSQL the store-backed tests may start.
func TestMain(m *testing.M) { os.Exit(pg.Main(m)) }
