package vm_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/sdktest"
	"github.com/openvair/openvair/storage"
	"github.com/openvair/openvair/vm"
	"github.com/openvair/openvair/volume"
)

// TestListFiltersAreChecked: a filter with a control character (a NUL used to reach SQL and give 500) or
// an unknown status is ErrInvalid naming the filter, in every service; a name filter matches the stored,
// normalized name.
func TestListFiltersAreChecked(t *testing.T) {
	e := sdktest.New(t, nil)
	e.VM(t, "été")
	lists := map[string]func(name, status string) error{
		"storage": func(n, s string) error {
			_, err := e.Sys.Storages.List(e.Ctx, storage.ListOptions{Name: n, Status: storage.Status(s)})
			return err
		},
		"volume": func(n, s string) error {
			_, err := e.Sys.Volumes.List(e.Ctx, volume.ListOptions{Name: n, Status: volume.Status(s)})
			return err
		},
		"image": func(n, s string) error {
			_, err := e.Sys.Images.List(e.Ctx, image.ListOptions{Name: n, Status: image.Status(s)})
			return err
		},
		"vm": func(n, s string) error {
			_, err := e.Sys.VMs.List(e.Ctx, vm.ListOptions{Name: n, Status: vm.Status(s)})
			return err
		},
	}
	for entity, list := range lists {
		for _, c := range []struct{ name, status, field string }{
			{"\x00", "", "name"}, {"a\nb", "", "name"}, {"\xff", "", "name"}, {"", "bogus", "status"},
		} {
			err := list(c.name, c.status)
			var ve *errkind.ValidationError
			require.ErrorAs(t, err, &ve, "%s %q %q", entity, c.name, c.status)
			assert.Equal(t, c.field, ve.Fields[0].Field, entity)
		}
		assert.NoError(t, list("", "available"), entity)
	}
	page, err := e.Sys.VMs.List(e.Ctx, vm.ListOptions{Name: " e\u0301te\u0301 "})
	require.NoError(t, err)
	require.Len(t, page.Items, 1, "the name filter is normalized like the name")
	_, err = e.Sys.VMs.List(e.Ctx, vm.ListOptions{PowerState: "on"})
	assert.ErrorIs(t, err, errkind.Invalid)
	_, err = e.Sys.Storages.List(e.Ctx, storage.ListOptions{Type: "ZFS!"})
	assert.ErrorIs(t, err, errkind.Invalid)
}
