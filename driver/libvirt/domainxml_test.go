package libvirt

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"libvirt.org/go/libvirtxml"
)

func fullSpec() driver.DomainSpec {
	return driver.DomainSpec{
		ID:          uuid.MustParse("3f1c2a9e-1111-2222-3333-444455556666"),
		Name:        `web <&> "one"`,
		Description: "front end",
		CPU:         driver.CPUSpec{Sockets: 2, Cores: 3, Threads: 2, Mode: "custom", Model: "Skylake-Client"},
		MemoryBytes: 2 << 30,
		Firmware:    "uefi",
		MachineType: "pc-q35-7.2",
		Disks: []driver.DiskSpec{
			{Device: "disk", Bus: "virtio", Format: driver.FormatQCOW2, BootOrder: 1,
				Source:   driver.DiskSource{Type: "file", Path: "/data/pool/volume-a"},
				ReadIOPS: 500, WriteIOPS: 400, ReadBytes: 157286400, WriteBytes: 104857600},
			{Device: "disk", Bus: "scsi", Format: driver.FormatRaw, ReadOnly: true,
				Source: driver.DiskSource{Type: "network", Protocol: "nfs", Host: "nfs1.example", Name: "/export/pool/volume-b"}},
			{Device: "cdrom", Source: driver.DiskSource{Type: "file", Path: "/data/pool/image-c"}, BootOrder: 2},
		},
		Interfaces: []driver.NICSpec{
			{Type: "bridge", Source: "br0", Model: "e1000", MAC: "6C:4A:74:EC:CC:D9"},
			{Type: "network", Source: "default"},
		},
		Graphics: driver.GraphicsSpec{Type: "spice", Listen: "0.0.0.0", Password: "s3cret"},
	}
}

func intp(n int) *int { return &n }

func TestBuildDomainXMLEveryField(t *testing.T) {
	caps := Caps{DomainType: "kvm", QEMUUID: intp(64055), QEMUGID: intp(994), NVRAMDir: "/var/lib/ov/nvram", Emulator: "/usr/bin/qemu-system-x86_64"}
	spec := fullSpec()
	dom, err := BuildDomainXML(spec, caps)
	require.NoError(t, err)
	doc, err := dom.Marshal()
	require.NoError(t, err)
	for _, want := range []string{
		`<domain type="kvm">`,
		`<name>openvair-3f1c2a9e-1111-2222-3333-444455556666</name>`,
		`<uuid>3f1c2a9e-1111-2222-3333-444455556666</uuid>`,
		`<title>web &lt;&amp;&gt; &#34;one&#34;</title>`,
		`<description>front end</description>`,
		`<memory unit="KiB">2097152</memory>`,
		`<vcpu placement="static">12</vcpu>`,
		`<cpu match="exact" mode="custom">`,
		`<model fallback="forbid">Skylake-Client</model>`,
		`<topology sockets="2" cores="3" threads="2"></topology>`,
		`<os firmware="efi">`,
		`<type arch="x86_64" machine="pc-q35-7.2">hvm</type>`,
		`<nvram>/var/lib/ov/nvram/3f1c2a9e-1111-2222-3333-444455556666_VARS.fd</nvram>`,
		`<acpi></acpi>`,
		`<emulator>/usr/bin/qemu-system-x86_64</emulator>`,
		`<disk type="file" device="disk">`,
		`<driver name="qemu" type="qcow2"></driver>`,
		`<source file="/data/pool/volume-a"></source>`,
		`<target dev="vda" bus="virtio"></target>`,
		`<read_bytes_sec>157286400</read_bytes_sec>`,
		`<write_bytes_sec>104857600</write_bytes_sec>`,
		`<read_iops_sec>500</read_iops_sec>`,
		`<write_iops_sec>400</write_iops_sec>`,
		`<boot order="1"></boot>`,
		`<disk type="network" device="disk">`,
		`<source protocol="nfs" name="/export/pool/volume-b">`,
		`<host name="nfs1.example"></host>`,
		`<identity user="+64055" group="+994"></identity>`,
		`<target dev="sda" bus="scsi"></target>`,
		`<readonly></readonly>`,
		`<disk type="file" device="cdrom">`,
		`<driver name="qemu" type="raw"></driver>`,
		`<target dev="sdb" bus="sata"></target>`,
		`<boot order="2"></boot>`,
		`<controller type="scsi" index="0" model="virtio-scsi">`,
		`<interface type="bridge">`,
		`<mac address="6c:4a:74:ec:cc:d9"></mac>`,
		`<source bridge="br0"></source>`,
		`<model type="e1000"></model>`,
		`<interface type="network">`,
		`<source network="default"></source>`,
		`<model type="virtio"></model>`,
		`<graphics type="spice" autoport="yes" listen="0.0.0.0" passwd="s3cret">`,
		`<listen type="address" address="0.0.0.0"></listen>`,
		`<serial type="pty">`,
		`<console type="pty">`,
		`<target type="serial" port="0"></target>`,
	} {
		assert.Contains(t, doc, want)
	}
	assert.Equal(t, 2, strings.Count(doc, "<readonly>"), "read-only disk and cdrom")
	assert.NotContains(t, doc, "<boot dev=", "per-device boot order replaces <os><boot>")
}

func TestBuildDomainXMLDefaults(t *testing.T) {
	spec := driver.DomainSpec{
		ID: uuid.New(), MemoryBytes: 100<<20 + 1,
		Boot: []string{"cdrom", "hd", "network"},
		Disks: []driver.DiskSpec{
			{Format: driver.FormatRaw, Source: driver.DiskSource{Type: "file", Path: "/a"}},
			{Format: driver.FormatRaw, Source: driver.DiskSource{Type: "file", Path: "/b"}},
		},
		Graphics: driver.GraphicsSpec{Type: "vnc", Password: "pw"},
	}
	dom, err := BuildDomainXML(spec, Caps{})
	require.NoError(t, err)
	doc, err := dom.Marshal()
	require.NoError(t, err)
	for _, want := range []string{
		`<domain type="qemu">`, `<vcpu placement="static">1</vcpu>`, `<memory unit="KiB">102401</memory>`,
		"<boot dev=\"cdrom\"></boot>\n    <boot dev=\"hd\"></boot>\n    <boot dev=\"network\"></boot>",
		`<target dev="vda" bus="virtio">`, `<target dev="vdb" bus="virtio">`,
		`<graphics type="vnc" autoport="yes" passwd="pw">`,
	} {
		assert.Contains(t, doc, want)
	}
	assert.NotContains(t, doc, "<title>")
	assert.NotContains(t, doc, "firmware=")
	assert.NotContains(t, doc, "<identity", "no identity when the QEMU uid is unknown")
	assert.NotContains(t, doc, "mode=", "no CPU mode: hypervisor default")
}

func TestBuildDomainXMLRoundTrip(t *testing.T) {
	dom, err := BuildDomainXML(fullSpec(), Caps{DomainType: "kvm", QEMUUID: intp(1), QEMUGID: intp(2)})
	require.NoError(t, err)
	first, err := dom.Marshal()
	require.NoError(t, err)
	var back libvirtxml.Domain
	require.NoError(t, back.Unmarshal(first))
	second, err := back.Marshal()
	require.NoError(t, err)
	assert.Equal(t, first, second)
}

func TestDiskNames(t *testing.T) {
	for i, want := range map[int]string{0: "sda", 25: "sdz", 26: "sdaa", 27: "sdab", 52: "sdba", 701: "sdzz"} {
		got, err := diskName("sd", i)
		require.NoError(t, err)
		assert.Equal(t, want, got, "index %d", i)
	}
	_, err := diskName("sd", 702)
	assert.Error(t, err)
}

func TestBuildDomainXMLInvalid(t *testing.T) {
	cases := []struct {
		name  string
		field string
		edit  func(*driver.DomainSpec)
	}{
		{"nil id", "id", func(s *driver.DomainSpec) { s.ID = uuid.Nil }},
		{"newline in name", "name", func(s *driver.DomainSpec) { s.Name = "a\nb" }},
		{"no memory", "memory", func(s *driver.DomainSpec) { s.MemoryBytes = 0 }},
		{"negative memory", "memory", func(s *driver.DomainSpec) { s.MemoryBytes = -1 }},
		{"negative cores", "cpu", func(s *driver.DomainSpec) { s.CPU.Cores = -1 }},
		{"too many vcpus", "cpu", func(s *driver.DomainSpec) { s.CPU.Sockets, s.CPU.Cores = 1<<40, 1<<40 }},
		{"bad cpu mode", "cpu.mode", func(s *driver.DomainSpec) { s.CPU.Mode = "turbo" }},
		{"custom without model", "cpu.model", func(s *driver.DomainSpec) { s.CPU.Model = "" }},
		{"model without custom", "cpu.model", func(s *driver.DomainSpec) { s.CPU.Mode = "host-model" }},
		{"model injection", "cpu.model", func(s *driver.DomainSpec) { s.CPU.Model = "x'/><evil/>" }},
		{"bad firmware", "firmware", func(s *driver.DomainSpec) { s.Firmware = "coreboot" }},
		{"bad machine", "machine_type", func(s *driver.DomainSpec) { s.MachineType = "pc q35" }},
		{"bad boot device", "boot[0]", func(s *driver.DomainSpec) { s.Boot = []string{"floppy"} }},
		{"boot list and order", "boot", func(s *driver.DomainSpec) { s.Boot = []string{"hd"} }},
		{"duplicate boot order", "disks[2].boot_order", func(s *driver.DomainSpec) { s.Disks[2].BootOrder = 1 }},
		{"negative boot order", "disks[0].boot_order", func(s *driver.DomainSpec) { s.Disks[0].BootOrder = -1 }},
		{"bad device", "disks[0].device", func(s *driver.DomainSpec) { s.Disks[0].Device = "floppy" }},
		{"bad bus", "disks[0].bus", func(s *driver.DomainSpec) { s.Disks[0].Bus = "ide" }},
		{"virtio cdrom", "disks[2].bus", func(s *driver.DomainSpec) { s.Disks[2].Bus = "virtio" }},
		{"no format", "disks[0].format", func(s *driver.DomainSpec) { s.Disks[0].Format = "" }},
		{"bad format", "disks[0].format", func(s *driver.DomainSpec) { s.Disks[0].Format = "vmdk" }},
		{"negative iops", "disks[0].iotune", func(s *driver.DomainSpec) { s.Disks[0].ReadIOPS = -5 }},
		{"relative path", "disks[0].source.path", func(s *driver.DomainSpec) { s.Disks[0].Source.Path = "data/x" }},
		{"unclean path", "disks[0].source.path", func(s *driver.DomainSpec) { s.Disks[0].Source.Path = "/data/../etc/shadow" }},
		{"no source type", "disks[0].source.type", func(s *driver.DomainSpec) { s.Disks[0].Source.Type = "" }},
		{"bad protocol", "disks[1].source.protocol", func(s *driver.DomainSpec) { s.Disks[1].Source.Protocol = "iscsi" }},
		{"bad host", "disks[1].source.host", func(s *driver.DomainSpec) { s.Disks[1].Source.Host = "a b" }},
		{"nfs file at export root", "disks[1].source.name", func(s *driver.DomainSpec) { s.Disks[1].Source.Name = "/file" }},
		{"nfs relative name", "disks[1].source.name", func(s *driver.DomainSpec) { s.Disks[1].Source.Name = "export/file" }},
		{"bad nic type", "interfaces[0].type", func(s *driver.DomainSpec) { s.Interfaces[0].Type = "direct" }},
		{"empty nic source", "interfaces[0].source", func(s *driver.DomainSpec) { s.Interfaces[0].Source = "" }},
		{"bad nic model", "interfaces[0].model", func(s *driver.DomainSpec) { s.Interfaces[0].Model = "bridge" }},
		{"bad mac", "interfaces[0].mac", func(s *driver.DomainSpec) { s.Interfaces[0].MAC = "zz:zz" }},
		{"multicast mac", "interfaces[0].mac", func(s *driver.DomainSpec) { s.Interfaces[0].MAC = "01:00:5e:00:00:01" }},
		{"duplicate mac", "interfaces[1].mac", func(s *driver.DomainSpec) { s.Interfaces[1].MAC = "6c-4a-74-ec-cc-d9" }},
		{"bad graphics", "graphics.type", func(s *driver.DomainSpec) { s.Graphics.Type = "rdp" }},
		{"bad listen", "graphics.listen", func(s *driver.DomainSpec) { s.Graphics.Listen = "localhost" }},
		{"listen without type", "graphics", func(s *driver.DomainSpec) { s.Graphics.Type = "" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := fullSpec()
			c.edit(&spec)
			dom, err := BuildDomainXML(spec, Caps{})
			require.Error(t, err)
			assert.Nil(t, dom)
			assert.ErrorIs(t, err, driver.ErrInvalid)
			var verr *errkind.ValidationError
			require.True(t, errors.As(err, &verr))
			var fields []string
			for _, f := range verr.Fields {
				fields = append(fields, f.Field)
			}
			assert.Contains(t, fields, c.field)
		})
	}
}

func TestParseConsole(t *testing.T) {
	id := uuid.New()
	c, err := parseConsole(id, `<domain><devices><graphics type="vnc" port="5901" autoport="yes" listen="0.0.0.0"><listen type="address" address="192.0.2.1"/></graphics></devices></domain>`)
	require.NoError(t, err)
	assert.Equal(t, driver.Console{Type: "vnc", Host: "192.0.2.1", Port: 5901}, c)
	c, err = parseConsole(id, `<domain><devices><graphics type="spice" port="5902"/></devices></domain>`)
	require.NoError(t, err)
	assert.Equal(t, driver.Console{Type: "spice", Host: "127.0.0.1", Port: 5902}, c)
	_, err = parseConsole(id, `<domain><devices><graphics type="vnc" port="-1" autoport="yes"/></devices></domain>`)
	assert.ErrorIs(t, err, errkind.WrongState)
	_, err = parseConsole(id, `<domain><devices/></domain>`)
	assert.ErrorIs(t, err, driver.ErrNotFound)
}

func TestParseDACLabel(t *testing.T) {
	u, g, ok := parseDACLabel("+64055:+994")
	require.True(t, ok)
	assert.Equal(t, []int{64055, 994}, []int{u, g})
	_, _, ok = parseDACLabel("qemu")
	assert.False(t, ok)
}
