package vm_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/sdktest"
	"github.com/openvair/openvair/vm"
)

// Networks lists the hypervisor's networks and the host's bridges; a NIC naming neither is refused at
// create and edit, naming the field, and nothing is recorded.
func TestNetworks(t *testing.T) {
	e := sdktest.New(t, nil)
	nets, err := e.Sys.VMs.Networks(e.Ctx)
	require.NoError(t, err)
	assert.Equal(t, []vm.Network{{Name: "default", Type: "network", Active: true, Bridge: "virbr0"},
		{Name: "br0", Type: "bridge", Active: true}, {Name: "virbr0", Type: "bridge", Active: true}}, nets)

	for _, c := range []struct {
		nic   vm.Interface
		field string
	}{
		{vm.Interface{Type: "network", Source: "prod"}, "interfaces[0].source"},
		{vm.Interface{Type: "bridge", Source: "br9"}, "interfaces[0].source"},
	} {
		req := sdktest.VMRequest("web")
		req.Interfaces = []vm.Interface{c.nic}
		_, err := e.Sys.VMs.Create(e.Ctx, req)
		require.ErrorIs(t, err, errkind.Invalid)
		var ve *errkind.ValidationError
		require.ErrorAs(t, err, &ve)
		assert.Equal(t, c.field, ve.Fields[0].Field)
		assert.Contains(t, ve.Fields[0].Message, c.nic.Source)
	}
	page, err := e.Sys.VMs.List(e.Ctx, vm.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, page.Items)

	v, err := e.Sys.VMs.Create(e.Ctx, sdktest.VMRequest("web"))
	require.NoError(t, err)
	bad := []vm.Interface{{Type: "bridge", Source: "br0"}, {Type: "network", Source: "nope"}}
	_, err = e.Sys.VMs.Edit(e.Ctx, v.ID, vm.EditRequest{Interfaces: &bad})
	var ve *errkind.ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, "interfaces[1].source", ve.Fields[0].Field)
}
