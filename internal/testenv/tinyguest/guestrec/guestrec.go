// Package guestrec is what the tiny test guest's /init (package guestinit) and the tests that read its disk
// share: the record the guest writes on its first virtio disk, and how it reads its NoCloud seed's meta-data
// and user-data. It has no dependencies outside the standard library, so that the guest's /init stays small.
//
// # The record
//
// The record is Size bytes of text, padded with NUL bytes:
//
//	OPENVAIR-TINYGUEST-MARKER boots=<decimal>\n
//	seed=cidata\n                 (the lines below only when the guest read a cidata seed this boot)
//	instance-id=<Go-quoted>\n
//	hostname=<Go-quoted>\n
//	user-marker=<Go-quoted>\n
//
// Values are quoted with strconv.QuoteToASCII. The first line alone is the boot marker the guest has always
// written (package tinyguest's ParseMarker reads it from the first 512 bytes); the first boot writes boots=1
// and every boot adds one to the count it finds.
//
// # The user-data marker
//
// The guest takes a marker from its user-data (any format: #cloud-config, a #! script, multipart): the text
// after "tinyguest-marker:" on the first line that starts with that key, either at column 0 (a top-level
// key of a cloud-config document) or after a '#' and optional blanks (a comment in a script). Surrounding
// blanks are dropped, then one pair of matching single or double quotes. For example
//
//	#cloud-config
//	tinyguest-marker: hello-42
//
// or
//
//	#!/bin/sh
//	# tinyguest-marker: hello-42
//
// both give the marker "hello-42".
package guestrec

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Marker starts every record.
const Marker = "OPENVAIR-TINYGUEST-MARKER"

// Size is the size of the record area: the guest reads and writes exactly this many bytes.
const Size = 4096

// MaxValue is the longest value (in bytes, before quoting) the guest puts in a record; longer values are
// cut (at a UTF-8 boundary).
const MaxValue = 256

// UserDataKey is the key of the user-data line that carries the marker.
const UserDataKey = "tinyguest-marker"

// Record is what the guest writes on its disk at each boot.
type Record struct {
	// Boots counts the boots that wrote this record (1 on the first).
	Boots int
	// Seed is true when the guest read a NoCloud seed (a cdrom labelled cidata) on the boot that wrote the
	// record; the fields below are empty otherwise.
	Seed bool
	// InstanceID is meta-data's instance-id.
	InstanceID string
	// Hostname is meta-data's local-hostname.
	Hostname string
	// UserMarker is the marker of the user-data (see UserDataMarker); empty when it has none.
	UserMarker string
}

// Encode returns the record as the guest writes it: exactly Size bytes. Values longer than MaxValue are cut
// to MaxValue bytes, so the record always fits.
func (r Record) Encode() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s boots=%d\n", Marker, r.Boots)
	if r.Seed {
		b.WriteString("seed=cidata\n")
		for _, kv := range [][2]string{{"instance-id", r.InstanceID}, {"hostname", r.Hostname}, {"user-marker", r.UserMarker}} {
			fmt.Fprintf(&b, "%s=%s\n", kv[0], strconv.QuoteToASCII(Cut(kv[1], MaxValue)))
		}
	}
	out := make([]byte, Size)
	copy(out, b.String()) // at most ~80 + 3*(12+4*MaxValue+3) bytes: always less than Size
	return out
}

var firstLineRE = regexp.MustCompile(`\A` + regexp.QuoteMeta(Marker) + ` boots=([0-9]{1,9})\n`)

// Parse reads a record from the start of b (at most Size bytes are looked at; the text ends at the first NUL
// byte). ok is false when b does not start with a well-formed record: no Marker line, or a later line that
// is not key=<quoted value>, or a seed record without its three values.
func Parse(b []byte) (r Record, ok bool) {
	if len(b) > Size {
		b = b[:Size]
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	m := firstLineRE.FindSubmatch(b)
	if m == nil {
		return Record{}, false
	}
	n, err := strconv.Atoi(string(m[1]))
	if err != nil {
		return Record{}, false
	}
	r.Boots = n
	rest := string(b[len(m[0]):])
	if rest == "" {
		return r, true
	}
	if !strings.HasSuffix(rest, "\n") {
		return Record{}, false
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(rest, "\n"), "\n") {
		key, val, found := strings.Cut(line, "=")
		if !found || seen[key] {
			return Record{}, false
		}
		seen[key] = true
		if key == "seed" {
			if val != "cidata" {
				return Record{}, false
			}
			r.Seed = true
			continue
		}
		v, err := strconv.Unquote(val)
		if err != nil || !strings.HasPrefix(val, `"`) {
			return Record{}, false
		}
		switch key {
		case "instance-id":
			r.InstanceID = v
		case "hostname":
			r.Hostname = v
		case "user-marker":
			r.UserMarker = v
		default:
			return Record{}, false
		}
	}
	if !r.Seed || !seen["instance-id"] || !seen["hostname"] || !seen["user-marker"] {
		return Record{}, false // extra lines come only with a seed, and then all of them
	}
	return r, true
}

var userDataRE = regexp.MustCompile(`(?m)^(?:#[ \t]*)?` + regexp.QuoteMeta(UserDataKey) + `:(.*)$`)

// UserDataMarker returns the marker of a user-data document (see the package documentation), or "" when
// it has none.
func UserDataMarker(userData string) string {
	m := userDataRE.FindStringSubmatch(userData)
	if m == nil {
		return ""
	}
	v := strings.TrimSpace(strings.TrimSuffix(m[1], "\r"))
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		v = v[1 : len(v)-1]
	}
	return v
}

// MetaData returns instance-id and local-hostname from a NoCloud meta-data document. It reads top-level
// "key: value" lines only (the form openvair writes: plain, single- or double-quoted scalars), not YAML
// in general; a missing key gives "".
func MetaData(metaData string) (instanceID, hostname string) {
	for _, line := range strings.Split(metaData, "\n") {
		key, val, found := strings.Cut(strings.TrimRight(line, "\r"), ":")
		if !found || key != strings.TrimSpace(key) {
			continue // not a top-level key (indented), or no colon
		}
		switch key {
		case "instance-id":
			instanceID = yamlScalar(val)
		case "local-hostname":
			hostname = yamlScalar(val)
		}
	}
	return instanceID, hostname
}

// yamlScalar reads a one-line YAML scalar: double-quoted (Go escapes, which cover YAML's common ones),
// single-quoted (two single quotes stand for one), or plain (a " #" comment ends it).
func yamlScalar(s string) string {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, `"`):
		if end := strings.LastIndexByte(s, '"'); end > 0 {
			if v, err := strconv.Unquote(s[:end+1]); err == nil {
				return v
			}
			return s[1:end]
		}
	case strings.HasPrefix(s, `'`):
		if end := strings.LastIndexByte(s, '\''); end > 0 {
			return strings.ReplaceAll(s[1:end], "''", "'")
		}
	}
	if i := strings.Index(s, " #"); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return s
}

// Cut returns s cut to at most n bytes without splitting a UTF-8 sequence.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 { // s[n] continues a sequence: cut before its start
		n--
	}
	return s[:n]
}
