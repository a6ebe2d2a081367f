package guestrec

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/cloudinit"
)

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []Record{
		{Boots: 1},
		{Boots: 123456789},
		{Boots: 2, Seed: true, InstanceID: "0192f0c4-7d1e-7b7a-9a3e-4d2c1b0a9f8e", Hostname: "guest-7", UserMarker: "hello 42"},
		{Boots: 3, Seed: true},
		{Boots: 4, Seed: true, Hostname: "a\nb\"c\x00d", UserMarker: "é ✓ \U0001F600 \xff"},
	} {
		b := r.Encode()
		require.Len(t, b, Size)
		got, ok := Parse(b)
		require.True(t, ok, "%q", b)
		assert.Equal(t, r, got)
	}
}

func TestRecordFitsWithLongValues(t *testing.T) {
	long := strings.Repeat("\xff", 5000) // the worst case for quoting: \xff, 4 bytes per byte
	r := Record{Boots: 999999999, Seed: true, InstanceID: long, Hostname: long, UserMarker: long}
	b := r.Encode()
	require.Len(t, b, Size)
	assert.Equal(t, byte(0), b[Size-1], "NUL terminated")
	got, ok := Parse(b)
	require.True(t, ok)
	assert.Equal(t, long[:MaxValue], got.Hostname)
	emoji := strings.Repeat("\U0001F600", 1000)
	got, ok = Parse(Record{Boots: 1, Seed: true, Hostname: emoji}.Encode())
	require.True(t, ok)
	assert.Equal(t, emoji[:MaxValue], got.Hostname, "cut at a rune boundary")
}

func TestParseRejects(t *testing.T) {
	for name, s := range map[string]string{
		"empty":          "",
		"zeros":          "\x00\x00",
		"other marker":   "OPENVAIR-TINYGUEST-MARKEX boots=1\n",
		"no newline":     Marker + " boots=1",
		"no digits":      Marker + " boots=\n",
		"not at start":   " " + Marker + " boots=1\n",
		"lines no seed":  Marker + " boots=1\nhostname=\"x\"\n",
		"seed missing":   Marker + " boots=1\nseed=cidata\nhostname=\"x\"\n",
		"unquoted":       Marker + " boots=1\nseed=cidata\ninstance-id=i\nhostname=\"x\"\nuser-marker=\"m\"\n",
		"unknown key":    Marker + " boots=1\nseed=cidata\ninstance-id=\"i\"\nhostname=\"x\"\nuser-marker=\"m\"\nfoo=\"\"\n",
		"duplicate key":  Marker + " boots=1\nseed=cidata\ninstance-id=\"i\"\nhostname=\"x\"\nhostname=\"y\"\nuser-marker=\"m\"\n",
		"bad seed":       Marker + " boots=1\nseed=other\ninstance-id=\"i\"\nhostname=\"x\"\nuser-marker=\"m\"\n",
		"unfinished":     Marker + " boots=1\nseed=cidata",
		"backquoted":     Marker + " boots=1\nseed=cidata\ninstance-id=`i`\nhostname=\"x\"\nuser-marker=\"m\"\n",
		"too many digit": Marker + " boots=1234567890\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, ok := Parse([]byte(s))
			assert.False(t, ok)
		})
	}
	r, ok := Parse([]byte(Marker + " boots=5\n\x00garbage after the NUL"))
	assert.True(t, ok)
	assert.Equal(t, Record{Boots: 5}, r)
}

func TestUserDataMarker(t *testing.T) {
	for in, want := range map[string]string{
		"#cloud-config\ntinyguest-marker: hello-42\n":             "hello-42",
		"#cloud-config\ntinyguest-marker:   'quoted text'  \r\n":  "quoted text",
		"#cloud-config\ntinyguest-marker: \"double\"\n":           "double",
		"#cloud-config\ntinyguest-marker: \"unbalanced\n":         "\"unbalanced",
		"#!/bin/sh\n# tinyguest-marker: from a script\necho hi\n": "from a script",
		"#!/bin/sh\n#tinyguest-marker:x\n":                        "x",
		"#cloud-config\nruncmd:\n  - tinyguest-marker: nested\n":  "",
		"#cloud-config\n": "",
		"":                "",
		"#cloud-config\ntinyguest-marker: first\ntinyguest-marker: second\n": "first",
	} {
		assert.Equal(t, want, UserDataMarker(in), "%q", in)
	}
}

// The meta-data openvair writes (internal/cloudinit) is read back by MetaData.
func TestMetaDataOfOpenvairSeeds(t *testing.T) {
	cfg := cloudinit.Config{Hostname: "guest-7", UserData: "#cloud-config\ntinyguest-marker: m-1\n",
		MetaData: "# comment\nplacement:\n  instance-id: nested-is-ignored\n", SSHAuthorizedKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGk5xJzwj2BqLlm8tEKmZb0eUEEeYoC5iW3sT9vB0Zr8 a@b"}}
	files, err := cfg.Seed("0192f0c4-7d1e-7b7a-9a3e-4d2c1b0a9f8e")
	require.NoError(t, err)
	id, host := MetaData(string(files[cloudinit.FileMetaData]))
	assert.Equal(t, "0192f0c4-7d1e-7b7a-9a3e-4d2c1b0a9f8e", id, "meta-data:\n%s", files[cloudinit.FileMetaData])
	assert.Equal(t, "guest-7", host)
	assert.Equal(t, "m-1", UserDataMarker(string(files[cloudinit.FileUserData])))

	for in, want := range map[string][2]string{
		"instance-id: plain-id\nlocal-hostname: h1 # comment\n":  {"plain-id", "h1"},
		"instance-id: 'it''s'\r\nlocal-hostname: \"h\\x32\"\r\n": {"it's", "h2"},
		"  instance-id: indented\nlocal-hostname:\n":             {"", ""},
		"": {"", ""},
	} {
		id, host := MetaData(in)
		assert.Equal(t, want, [2]string{id, host}, "%q", in)
	}
}

func TestCut(t *testing.T) {
	assert.Equal(t, "abc", Cut("abc", 5))
	assert.Equal(t, "ab", Cut("abc", 2))
	assert.Equal(t, "a", Cut("aé", 2), "é is two bytes")
	assert.Equal(t, "", Cut("é", 1))
}
