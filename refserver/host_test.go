package refserver_test

import (
	"encoding/json"
	"strings"
	"testing"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/refserver"
)

// TestHostTestDriver reads the host facts of libvirt's test driver (test:///default), whose host is fixed:
// 16 CPUs, 3 GiB, one active network "default" on virbr0, no domain capabilities.
func TestHostTestDriver(t *testing.T) {
	e := start(t, envOptions{libvirt: golibvirt.TestDefault})
	r := e.do("GET", "/api/v1/host", e.reader, nil)
	require.Equal(t, 200, r.Status, "a reader may read the host: %s", r.Body)
	var h refserver.Host
	require.NoError(t, json.Unmarshal(r.Body, &h))
	assert.NotEmpty(t, h.Hostname)
	assert.Equal(t, 16, h.CPUs)
	assert.EqualValues(t, 3<<30, h.Memory)
	assert.True(t, strings.HasPrefix(h.LibvirtVersion, "9."), "libvirt version %q", h.LibvirtVersion)
	assert.True(t, strings.HasPrefix(h.HypervisorVersion, "TEST "), "hypervisor version %q", h.HypervisorVersion)
	assert.Equal(t, []string{"test"}, h.DomainTypes)
	assert.NotEmpty(t, h.DefaultDomainType)
	assert.Equal(t, []string{"bios"}, h.Firmware, "no domain capabilities: BIOS only")
	assert.Equal(t, []refserver.HostNetwork{{Name: "default", Active: true, Bridge: "virbr0"}}, h.Networks)

	// Lists are arrays, never null, even when empty.
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(r.Body, &raw))
	for _, k := range []string{"domain_types", "cpu_modes", "machine_types", "firmware", "networks", "bridges"} {
		require.Contains(t, raw, k)
		assert.True(t, strings.HasPrefix(string(raw[k]), "["), "%s is %s", k, raw[k])
	}

	e.do("GET", "/api/v1/host", "", nil).problemIs(t, 401, "unauthenticated")
}

// TestHostNoHypervisor answers 503 with a problem when no hypervisor is configured.
func TestHostNoHypervisor(t *testing.T) {
	e := start(t, envOptions{})
	p := e.do("GET", "/api/v1/host", e.admin, nil).problemIs(t, 503, "unavailable")
	assert.Contains(t, p.Detail, "no hypervisor")
}

// TestHostOpenAPI documents the operation under tag host.
func TestHostOpenAPI(t *testing.T) {
	e := start(t, envOptions{})
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string         `json:"operationId"`
			Summary     string         `json:"summary"`
			Description string         `json:"description"`
			Tags        []string       `json:"tags"`
			Responses   map[string]any `json:"responses"`
		} `json:"paths"`
	}
	e.call("GET", "/openapi.json", nil, 200, &doc)
	op, ok := doc.Paths["/api/v1/host"]["get"]
	require.True(t, ok, "GET /api/v1/host is documented")
	assert.Equal(t, "getHost", op.OperationID)
	assert.Equal(t, []string{"host"}, op.Tags)
	assert.NotEmpty(t, op.Summary)
	assert.NotEmpty(t, op.Description)
	assert.Contains(t, op.Responses, "200")
	assert.Contains(t, op.Responses, "503")
}
