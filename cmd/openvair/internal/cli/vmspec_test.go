package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/cmd/openvair/internal/exitcode"
	"github.com/openvair/openvair/vm"
)

func TestParseDisk(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want diskSpec
	}{
		{"data", diskSpec{Volume: "data"}},
		{"volume=data,bus=sata,boot=2", diskSpec{Volume: "data", Bus: "sata", Boot: 2}},
		{"new:storage=pool,size=1GiB", diskSpec{New: &newDiskSpec{Storage: "pool", Size: 1 << 30}}},
		{"new:storage=pool,size=512MiB,format=raw,name=root,bus=scsi", diskSpec{Bus: "scsi",
			New: &newDiskSpec{Storage: "pool", Size: 512 << 20, Format: "raw", Name: "root"}}},
		{"new:from-image=debian,mode=linked", diskSpec{New: &newDiskSpec{FromImage: "debian", Mode: "linked"}}},
	} {
		got, err := parseDisk(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
	for _, in := range []string{"", "new:storage=pool", "new:size=1G", "volume=", "new:storage=p,size=1X", "bus=virtio",
		"new:from-image=a,from-volume=b", "volume=a,boot=0", "volume=a,colour=red", "new:"} {
		_, err := parseDisk(in)
		require.Error(t, err, in)
		assert.Equal(t, exitcode.Usage, exitcode.Of(err), in)
	}
}

func TestParseNIC(t *testing.T) {
	n, err := parseNIC("network=default")
	require.NoError(t, err)
	assert.Equal(t, vm.Interface{Type: "network", Source: "default"}, n)
	n, err = parseNIC("bridge=br0,model=e1000,mac=52:54:00:00:00:01")
	require.NoError(t, err)
	assert.Equal(t, vm.Interface{Type: "bridge", Source: "br0", Model: "e1000", MAC: "52:54:00:00:00:01"}, n)
	for _, in := range []string{"", "model=virtio", "network=a,bridge=b", "net=default", "network="} {
		_, err := parseNIC(in)
		assert.Equal(t, exitcode.Usage, exitcode.Of(err), in)
	}
}

func TestParseConfig(t *testing.T) {
	cfg, err := parseConfig([]string{"path=/srv/x", "format=true", "qemu_uid=64055", "mode=0755", "x=1.5"}, "")
	require.NoError(t, err)
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	assert.JSONEq(t, `{"path":"/srv/x","format":true,"qemu_uid":64055,"mode":"0755","x":1.5}`, string(b))
	_, err = parseConfig([]string{"novalue"}, "")
	assert.Equal(t, exitcode.Usage, exitcode.Of(err))
	_, err = parseConfig(nil, "[1]")
	assert.Equal(t, exitcode.Usage, exitcode.Of(err))
	_, err = parseConfig([]string{"a=b"}, `{"a":"b"}`)
	assert.Equal(t, exitcode.Usage, exitcode.Of(err))
	cfg, err = parseConfig(nil, `{"server":"10.0.0.5"}`)
	require.NoError(t, err)
	b, _ = json.Marshal(cfg)
	assert.JSONEq(t, `{"server":"10.0.0.5"}`, string(b))
}

// Ctrl-] detaches in raw mode, after sending what came before it; without raw mode it is data.
func TestCopyUntilEscape(t *testing.T) {
	var out bytes.Buffer
	err := copyUntilEscape(&out, strings.NewReader("ls\r\x1dnot sent"), true)
	require.ErrorIs(t, err, errDetached)
	assert.Equal(t, "ls\r", out.String())

	out.Reset()
	err = copyUntilEscape(&out, strings.NewReader("a\x1db"), false)
	require.ErrorIs(t, err, io.EOF)
	assert.Equal(t, "a\x1db", out.String())
}

func TestPlainProgress(t *testing.T) {
	var out bytes.Buffer
	r, err := newReporter(progressPlain, &out, "upload x.iso", 100<<20, time.Millisecond)
	require.NoError(t, err)
	time.Sleep(2 * time.Millisecond)
	r.Set(50 << 20)
	r.Done()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 2)
	assert.Regexp(t, `^upload x\.iso: 50 MiB / 100 MiB \(50%\), [0-9.]+ [KMGT]?i?B/s, ETA `, lines[0])
	assert.Regexp(t, `^upload x\.iso: 50 MiB / 100 MiB \(50%\), .*, done in `, lines[1])
	_, err = newReporter("fancy", &out, "x", 1, 0)
	assert.Equal(t, exitcode.Usage, exitcode.Of(err))
}
