package refserver_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/testenv/tinyguest"
	"github.com/openvair/openvair/refserver"
)

// TestActThenReadRealQEMU: with the monitors following libvirt's events, every start and stop answer —
// forced and graceful, against a real guest on the system daemon — is what an immediate read shows, and a
// delete right after a stop works. Late lifecycle events (the guest's "shutting down", the stop event of
// a forced stop) must not overwrite what the operation recorded.
func TestActThenReadRealQEMU(t *testing.T) {
	e := start(t, envOptions{system: true})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.sys.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	st := e.localStorage("pool", filepath.Join(e.dir, "pool"))
	img := e.uploadFile(st.ID, "tinyguest", tinyguest.ISO(t))
	v := e.tinyGuestVM("tiny", st.ID, img.ID)
	id := v.ID.String()
	act := func(op string, body any, want string) {
		t.Helper()
		var got refserver.VM
		e.call("POST", "/api/v1/vms/"+id+"/"+op, body, 200, &got)
		require.Equal(t, want, string(got.PowerState), "%s answered", op)
		e.call("GET", "/api/v1/vms/"+id, nil, 200, &got)
		require.Equal(t, want, string(got.PowerState), "the read right after %s", op)
	}
	boots := 0
	for i := 0; i < 2; i++ { // graceful: the guest shuts down on ACPI
		act("start", nil, "running")
		boots++
		deadline := time.Now().Add(guestTimeout)
		for strings.Count(e.consoleLog(v.ID), tinyguest.LineMarker) < boots {
			require.True(t, time.Now().Before(deadline), "boot %d did not reach its marker", boots)
			time.Sleep(200 * time.Millisecond)
		}
		act("stop", map[string]any{"timeout": 120}, "shut_off")
	}
	for i := 0; i < 5; i++ { // forced, in a tight loop
		act("start", nil, "running")
		act("stop", map[string]any{"force": true}, "shut_off")
	}
	e.call("DELETE", "/api/v1/vms/"+id+"?delete_volumes=true", nil, 204, nil)
}
