package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kdomanski/iso9660"
	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/internal/testenv/tinyguest/guestrec"
)

const (
	seedLabel   = "cidata"         // the volume label of a NoCloud seed
	cdromWait   = 10 * time.Second // the longest wait for the SCSI cdroms the kernel found to get block devices
	maxSeedFile = 1 << 20          // the most read of one seed file
	isoPVD      = 16 * 2048        // offset of ISO 9660's primary volume descriptor
)

// seed is what the guest read from a NoCloud seed.
type seed struct {
	dev        string
	instanceID string
	hostname   string
	userData   string
}

// findSeed looks for a cdrom holding an ISO 9660 filesystem labelled cidata and reads its meta-data and
// user-data, without mounting it (the guest kernel has no iso9660 module loaded). It returns nil when there
// is none.
func findSeed() *seed {
	for _, name := range cdroms() {
		dev, err := blockNode(name)
		if err != nil {
			say("tinyguest: %s: %v", name, err)
			continue
		}
		s, err := readSeed(dev)
		if err != nil {
			say("tinyguest: %s: %v", dev, err)
			continue
		}
		if s != nil {
			return s
		}
	}
	return nil
}

// cdroms waits (at most cdromWait) until every SCSI cdrom the kernel found (a SCSI device of type 5, as the
// SATA cdroms are) has its block device, and returns the names of the sr block devices.
func cdroms() []string {
	deadline := time.Now().Add(cdromWait)
	for {
		pending := false
		devs, _ := filepath.Glob("/sys/bus/scsi/devices/*/type")
		for _, typ := range devs {
			b, err := os.ReadFile(typ)
			if err != nil || strings.TrimSpace(string(b)) != "5" {
				continue
			}
			if blocks, _ := filepath.Glob(filepath.Join(filepath.Dir(typ), "block", "*")); len(blocks) == 0 {
				pending = true
			}
		}
		if !pending || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	paths, _ := filepath.Glob("/sys/block/sr*")
	names := make([]string, 0, len(paths))
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	return names
}

// blockNode returns /dev/<name>, creating the node from /sys/block/<name>/dev when devtmpfs did not.
func blockNode(name string) (string, error) {
	dev := "/dev/" + name
	if _, err := os.Stat(dev); err == nil {
		return dev, nil
	}
	b, err := os.ReadFile("/sys/block/" + name + "/dev")
	if err != nil {
		return "", err
	}
	maj, min, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	if !ok {
		return "", fmt.Errorf("bad device number %q", b)
	}
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if err1 != nil || err2 != nil {
		return "", fmt.Errorf("bad device number %q", b)
	}
	if err := unix.Mknod(dev, unix.S_IFBLK|0o600, int(unix.Mkdev(uint32(ma), uint32(mi)))); err != nil && !os.IsExist(err) {
		return "", fmt.Errorf("mknod %s: %w", dev, err)
	}
	return dev, nil
}

// readSeed reads a NoCloud seed from a cdrom; nil, nil when the cdrom holds no ISO 9660 labelled cidata.
func readSeed(dev string) (*seed, error) {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pvd := make([]byte, 2048)
	if _, err := f.ReadAt(pvd, isoPVD); err != nil {
		return nil, nil // empty drive or too small: no seed
	}
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return nil, nil
	}
	if label := strings.TrimRight(string(pvd[40:72]), " \x00"); !strings.EqualFold(label, seedLabel) {
		return nil, nil
	}
	img, err := iso9660.OpenImage(f)
	if err != nil {
		return nil, fmt.Errorf("read the cidata ISO: %w", err)
	}
	root, err := img.RootDir()
	if err != nil {
		return nil, fmt.Errorf("read the cidata ISO: %w", err)
	}
	children, err := root.GetChildren()
	if err != nil {
		return nil, fmt.Errorf("read the cidata ISO: %w", err)
	}
	files := map[string][]byte{}
	for _, c := range children {
		name := strings.ToLower(c.Name())
		if c.IsDir() || (name != "meta-data" && name != "user-data") {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(c.Reader(), maxSeedFile))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		files[name] = bytes.TrimRight(b, "\x00")
	}
	s := &seed{dev: dev, userData: string(files["user-data"])}
	s.instanceID, s.hostname = guestrec.MetaData(string(files["meta-data"]))
	return s, nil
}

// printable replaces control and non-ASCII characters, for the console.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}
