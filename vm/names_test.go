package vm_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/sdktest"
	"github.com/openvair/openvair/storage"
)

// TestNamesInAnyScript: names are data, stored NFC-normalized and trimmed, and unique in that form; the
// domain gets them as its title only (it is named by id).
func TestNamesInAnyScript(t *testing.T) {
	e := sdktest.New(t, nil)
	for _, name := range []string{"веб-сервер", "ウェブ", "🚀", `<x a="&">'$(id)`} {
		m := e.VM(t, name)
		assert.Equal(t, name, m.Name)
		d := e.HV.Domain(m.ID)
		require.NotNil(t, d)
		assert.Equal(t, name, d.Spec.Name)
	}
	m := e.VM(t, "  été ")
	assert.Equal(t, "été", m.Name, "trimmed and NFC")
	_, err := e.Sys.VMs.Create(e.Ctx, sdktest.VMRequest("e\u0301te\u0301"))
	assert.ErrorIs(t, err, errkind.AlreadyExists, "the decomposed form is the same name")

	_, err = e.Sys.Storages.Create(e.Ctx, storage.CreateRequest{Name: "хранилище-1", Type: "localfs",
		Config: localfs.Config{Path: t.TempDir()}})
	require.NoError(t, err)
	_, err = e.Sys.Storages.Create(e.Ctx, storage.CreateRequest{Name: "a/b", Type: "localfs",
		Config: localfs.Config{Path: t.TempDir()}})
	assert.ErrorIs(t, err, errkind.Invalid)
}
