package refserver

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/openvair/openvair"
	"github.com/openvair/openvair/storage"
)

// Health is the body of /healthz and /readyz.
type Health struct {
	Status     string `json:"status" doc:"ok, or unavailable when the store or the configured hypervisor does not answer."`
	Store      string `json:"store,omitempty" doc:"ok or the store's error."`
	Hypervisor string `json:"hypervisor,omitempty" doc:"ok, not configured, or why it cannot be reached (VM calls then answer 503 and VM power states are marked stale)."`
}

type healthOutput struct{ Body Health }

// probeTimeout bounds each readiness check.
const probeTimeout = 3 * time.Second

func (s *server) registerHealth(api huma.API) {
	huma.Register(api, huma.Operation{OperationID: "healthz", Method: http.MethodGet, Path: "/healthz",
		Summary: "Liveness: the process serves requests", Tags: []string{"health"}},
		func(ctx context.Context, _ *struct{}) (*healthOutput, error) {
			return &healthOutput{Body: Health{Status: "ok"}}, nil
		})
	huma.Register(api, huma.Operation{OperationID: "readyz", Method: http.MethodGet, Path: "/readyz",
		Summary: "Readiness: the store and the configured hypervisor answer",
		Description: "200 when the store answers and the hypervisor, if one is configured, can be reached. Otherwise 503, " +
			"whose detail names each component that is down (store, hypervisor) and why. /healthz stays 200 meanwhile.",
		Tags: []string{"health"}, Errors: []int{http.StatusServiceUnavailable}},
		func(ctx context.Context, _ *struct{}) (*healthOutput, error) {
			h := s.readiness(ctx)
			if h.Status != "ok" {
				var down []string
				if h.Store != "ok" {
					down = append(down, "store: "+h.Store)
				}
				if h.Hypervisor != "ok" && h.Hypervisor != hypervisorNotConfigured {
					down = append(down, "hypervisor: "+h.Hypervisor)
				}
				return nil, newProblem(http.StatusServiceUnavailable, "unavailable", strings.Join(down, "; "))
			}
			return &healthOutput{Body: h}, nil
		})
}

// readiness checks the store and the hypervisor, each within probeTimeout.
func (s *server) readiness(ctx context.Context) Health {
	h := Health{Status: "ok", Store: "ok", Hypervisor: "ok"}
	sctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if _, err := s.sys.Storages.List(sctx, storage.ListOptions{Limit: 1}); err != nil {
		h.Status, h.Store = "unavailable", err.Error()
	}
	h.Hypervisor = HypervisorStatus(ctx, s.sys)
	if h.Hypervisor != "ok" && h.Hypervisor != hypervisorNotConfigured {
		h.Status = "unavailable"
	}
	return h
}

// hypervisorNotConfigured is the hypervisor status of a System without one; it does not make it unready.
const hypervisorNotConfigured = "not configured"

// HypervisorStatus reports whether the System's hypervisor answers within a few seconds: "ok",
// "not configured", or the error that makes VM calls answer 503.
func HypervisorStatus(ctx context.Context, sys *openvair.System) string {
	if !sys.VMs.HasHypervisor() {
		return hypervisorNotConfigured
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if err := sys.VMs.PingHypervisor(ctx); err != nil {
		return err.Error()
	}
	return "ok"
}
