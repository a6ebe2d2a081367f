package libvirt_test

import (
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"libvirt.org/go/libvirtxml"

	"github.com/openvair/openvair/driver/libvirt"
	"github.com/openvair/openvair/internal/testenv/libvirtd"
)

// TestNamesOnlyInTheTitle: a VM's name, in any script and with XML and shell metacharacters, reaches
// libvirt only as the domain's escaped title; the domain is named by id.
func TestNamesOnlyInTheTitle(t *testing.T) {
	d := libvirtd.Start(t)
	drv := openDriver(t, d, golibvirt.TestDefault)
	raw := d.Dial(t, golibvirt.TestDefault)
	ctx := ctxT(t, 30*time.Second)
	name := `веб <x a="&amp;">'$(id)` + "🚀"
	id := uuid.New()
	spec := testSpec(t, id)
	spec.Name = name
	require.NoError(t, drv.Define(ctx, spec))
	t.Cleanup(func() { _ = drv.Undefine(ctx, id) })
	dom, err := raw.DomainLookupByUUID(golibvirt.UUID(id))
	require.NoError(t, err)
	assert.Equal(t, libvirt.DomainName(id), dom.Name)
	doc, err := raw.DomainGetXMLDesc(dom, golibvirt.DomainXMLInactive)
	require.NoError(t, err)
	var got libvirtxml.Domain
	require.NoError(t, got.Unmarshal(doc))
	assert.Equal(t, name, got.Title, "the title round-trips exactly")
	assert.Equal(t, libvirt.DomainName(id), got.Name)
}
