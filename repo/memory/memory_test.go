package memory_test

import (
	"testing"

	"github.com/openvair/openvair/repo"
	"github.com/openvair/openvair/repo/memory"
	"github.com/openvair/openvair/repo/repotest"
)

func TestConformance(t *testing.T) {
	repotest.Run(t, func(*testing.T) repo.Store { return memory.New() })
}
