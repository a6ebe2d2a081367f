package openvair_test

import (
	"os"
	"testing"

	"github.com/openvair/openvair/internal/testenv/pg"
)

func TestMain(m *testing.M) { os.Exit(pg.Main(m)) }
