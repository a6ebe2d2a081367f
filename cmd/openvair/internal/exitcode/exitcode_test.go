package exitcode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/client"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, OK},
		{"plain", errors.New("boom"), Other},
		{"usage", Usagef("unknown flag --x"), Usage},
		{"wrapped usage", fmt.Errorf("vm create: %w", Usagef("bad --disk")), Usage},
		{"not found kind", &client.Error{Status: 404, Kind: "not_found"}, NotFound},
		{"not found status only", &client.Error{Status: 404, Kind: "status_404"}, NotFound},
		{"sdk not found", fmt.Errorf("x: %w", openvair.ErrNotFound), NotFound},
		{"conflict", &client.Error{Status: 409, Kind: "conflict"}, Conflict},
		{"in use", &client.Error{Status: 409, Kind: "in_use"}, Conflict},
		{"wrong state", &client.Error{Status: 409, Kind: "wrong_state"}, Conflict},
		{"already exists", &client.Error{Status: 409, Kind: "already_exists"}, Conflict},
		{"version mismatch", &client.Error{Status: 412, Kind: "precondition_failed"}, Conflict},
		{"503", &client.Error{Status: 503, Kind: "unavailable"}, Unavailable},
		{"network", fmt.Errorf("client: GET /x: %w: dial tcp: refused", openvair.ErrUnavailable), Unavailable},
		{"net.Error", &net.OpError{Op: "dial", Err: errors.New("refused")}, Unavailable},
		{"deadline", fmt.Errorf("list: %w", context.DeadlineExceeded), Unavailable},
		{"401", &client.Error{Status: 401, Kind: "unauthorized"}, Unauthorized},
		{"403", &client.Error{Status: 403, Kind: "forbidden"}, Unauthorized},
		{"422", &client.Error{Status: 422, Kind: "invalid"}, Invalid},
		{"400", &client.Error{Status: 400, Kind: "status_400"}, Invalid},
		{"413", &client.Error{Status: 413, Kind: "too_large"}, Invalid},
		{"unrunnable", &client.Error{Status: 422, Kind: "unrunnable"}, Invalid},
		{"500", &client.Error{Status: 500, Kind: "status_500"}, Other},
		{"502", &client.Error{Status: 502, Kind: "backend_failed"}, Other},
		{"504", &client.Error{Status: 504, Kind: "timeout"}, Other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Of(tc.err))
		})
	}
}
