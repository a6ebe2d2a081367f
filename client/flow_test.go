package client_test

import (
	"context"
	"iter"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/client"
	"github.com/openvair/openvair/internal/flowtest"
)

var (
	_ flowtest.Storages = client.Storages{}
	_ flowtest.Volumes  = client.Volumes{}
	_ flowtest.Images   = client.Images{}
	_ flowtest.VMs      = client.VMs{}
)

// The flows of internal/flowtest, which the SDK passes embedded (flow_test.go at the module's root), pass
// remote: the same SDK served by the reference server, through the client.
func TestFlowsRemote(t *testing.T) {
	e := newEnv(t, nil, nil)
	var dirs atomic.Int64
	flowtest.Run(t, flowtest.Services{
		Storages: e.c.Storages(), Volumes: e.c.Volumes(), Images: e.c.Images(), VMs: e.c.VMs(),
		Wait:          e.c.Wait,
		Dir:           func() string { return filepath.Join(e.base, "pool"+strconv.FormatInt(dirs.Add(1), 10)) },
		AppendConsole: e.hv.AppendConsole,
		Events: func(ctx context.Context, since int64, f openvair.EventFilter) iter.Seq2[openvair.Event, error] {
			return e.c.Events(ctx, client.EventOptions{Since: since, Resource: f.Resource, ResourceID: f.ResourceID, Types: f.Types})
		},
	})
}
