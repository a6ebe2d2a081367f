// Command guestinit is the /init (PID 1) of the tiny test guest built by package tinyguest.
//
// It mounts devtmpfs, proc and sysfs, loads the kernel modules listed in /modules/order, prints its progress on
// the serial and VGA consoles, reads a NoCloud seed when a cdrom labelled cidata is attached (meta-data's
// local-hostname and instance-id, and a marker from user-data; see package guestrec), writes a record (a boot
// counter, plus what it read from the seed) on /dev/vda, and powers the machine off when the ACPI power button
// is pressed. It never exits: PID 1 exiting would panic the kernel.
//
// The record goes to byte offset 0 of /dev/vda, or to the offset given on the kernel command line as
// tinyguest.record=<bytes> (a multiple of 512): a guest booted from its disk keeps its record clear of the
// boot sector and the partition. The strings below must match the constants of package tinyguest (a test
// there checks it).
package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/openvair/openvair/internal/testenv/tinyguest/guestrec"
)

const (
	lineBooted   = "tinyguest: booted"
	lineMarker   = "tinyguest: marker written"
	lineNoDisk   = "tinyguest: no disk"
	linePowerOff = "tinyguest: power button, powering off"
	lineCIData   = "tinyguest: cidata hostname="
	cmdlineKey   = "tinyguest.record="

	disk        = "/dev/vda"
	diskWait    = 20 * time.Second
	moduleList  = "/modules/order"
	sectorSize  = 512
	maxOffset   = 1 << 40
	evKey       = 0x01 // EV_KEY
	keyPower    = 116  // KEY_POWER
	inputEvSize = 24   // struct input_event on 64-bit: timeval (16), type (2), code (2), value (4)
)

// consoles are the terminals every line goes to.
var (
	consolesMu sync.Mutex
	consoles   []*os.File
)

func say(format string, args ...any) {
	line := fmt.Sprintf(format, args...) + "\n"
	consolesMu.Lock()
	defer consolesMu.Unlock()
	for _, f := range consoles {
		_, _ = f.WriteString(line)
	}
}

func main() {
	var mountErrs []error
	for _, m := range []struct{ src, dir, fstype string }{
		{"devtmpfs", "/dev", "devtmpfs"},
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
	} {
		_ = os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.src, m.dir, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			mountErrs = append(mountErrs, fmt.Errorf("mount %s: %w", m.dir, err))
		}
	}
	openConsoles()
	say(lineBooted)
	for _, err := range mountErrs {
		say("tinyguest: %v", err)
	}
	loadModules()
	// Watch the power button before the marker is written: whoever waits for LineMarker may press it at
	// once, and a press before the device is open is lost.
	ready := make(chan struct{})
	go watchPowerButton(ready) // never returns
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		say("tinyguest: no Power Button input device after 20 s")
	}
	var rec guestrec.Record
	if s := findSeed(); s != nil {
		rec = guestrec.Record{Seed: true, InstanceID: s.instanceID, Hostname: s.hostname,
			UserMarker: guestrec.UserDataMarker(s.userData)}
		if s.hostname != "" {
			if err := unix.Sethostname([]byte(guestrec.Cut(s.hostname, 64))); err != nil {
				say("tinyguest: sethostname: %v", err)
			}
		}
		say("tinyguest: cidata from %s instance-id=%s", s.dev, printable(guestrec.Cut(s.instanceID, guestrec.MaxValue)))
		say("%s%s", lineCIData, printable(guestrec.Cut(s.hostname, guestrec.MaxValue)))
	}
	writeMarker(rec)
	select {}
}

// openConsoles opens the serial port and the VGA text console; /dev/console (the last console= of the
// kernel command line) is the fallback.
func openConsoles() {
	for _, name := range []string{"/dev/ttyS0", "/dev/tty0"} {
		if f, err := os.OpenFile(name, os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
			consoles = append(consoles, f)
		}
	}
	if len(consoles) == 0 {
		if f, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
			consoles = append(consoles, f)
		}
	}
}

// loadModules loads the modules listed in /modules/order, one path per line, in that order.
func loadModules() {
	list, err := os.ReadFile(moduleList)
	if err != nil {
		say("tinyguest: read module list: %v", err)
		return
	}
	for _, path := range strings.Fields(string(list)) {
		if err := loadModule(path); err != nil {
			say("tinyguest: load module %s: %v", path, err)
		}
	}
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// writeMarker waits for the first virtio disk and writes rec there with the boot count bumped.
func writeMarker(rec guestrec.Record) {
	deadline := time.Now().Add(diskWait)
	for {
		if _, err := os.Stat(disk); err == nil {
			break
		}
		if time.Now().After(deadline) {
			say(lineNoDisk)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	off, err := recordOffset()
	if err != nil {
		say("tinyguest: %v", err)
		return
	}
	boots, err := bumpMarker(off, rec)
	if err != nil {
		say("tinyguest: marker: %v", err)
		return
	}
	say("tinyguest: boots=%d", boots)
	say(lineMarker)
}

// recordOffset returns where the record goes: tinyguest.record=<bytes> from the kernel command line, else 0.
func recordOffset() (int64, error) {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return 0, fmt.Errorf("read the kernel command line: %w", err)
	}
	for _, arg := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(arg, cmdlineKey); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || n%sectorSize != 0 || n > maxOffset {
				return 0, fmt.Errorf("bad %s%s: want a multiple of %d bytes", cmdlineKey, v, sectorSize)
			}
			return n, nil
		}
	}
	return 0, nil
}

// bumpMarker writes rec at off of the disk with the boot count found there plus one, and fsyncs it.
func bumpMarker(off int64, rec guestrec.Record) (int, error) {
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	area := make([]byte, guestrec.Size)
	if _, err := f.ReadAt(area, off); err != nil {
		return 0, fmt.Errorf("read the record at %d: %w", off, err)
	}
	prev, _ := guestrec.Parse(area) // Boots 0 when there is no record yet
	rec.Boots = prev.Boots + 1
	if _, err := f.WriteAt(rec.Encode(), off); err != nil {
		return 0, fmt.Errorf("write the record at %d: %w", off, err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("fsync: %w", err)
	}
	return rec.Boots, nil
}

// watchPowerButton watches every /dev/input/event* device (rescanning for late ones) and powers off on a
// KEY_POWER press; it closes ready once the ACPI "Power Button" device is open. It never returns.
func watchPowerButton(ready chan<- struct{}) {
	pressed := make(chan string, 1)
	var mu sync.Mutex
	var once sync.Once
	opened := func(name string) {
		if strings.Contains(name, "Power Button") {
			once.Do(func() { close(ready) })
		}
	}
	watching := map[string]bool{}
	for {
		paths, _ := filepath.Glob("/dev/input/event*")
		for _, p := range paths {
			mu.Lock()
			seen := watching[p]
			watching[p] = true
			mu.Unlock()
			if seen {
				continue
			}
			go func() {
				defer func() {
					if r := recover(); r != nil {
						say("tinyguest: %s: panic: %v", p, r)
					}
					mu.Lock()
					delete(watching, p) // a later scan may reopen it
					mu.Unlock()
				}()
				if err := watchDevice(p, pressed, opened); err != nil {
					say("tinyguest: %s: %v", p, err)
					time.Sleep(time.Second)
				}
			}()
		}
		select {
		case dev := <-pressed:
			say("tinyguest: KEY_POWER from %s", dev)
			say(linePowerOff)
			unix.Sync()
			if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
				say("tinyguest: power off: %v", err)
			}
		case <-time.After(time.Second):
		}
	}
}

// watchDevice reads input events from one device until an error and reports KEY_POWER presses; opened is
// called with the device's name once it is open.
func watchDevice(path string, pressed chan<- string, opened func(name string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	name := deviceName(f)
	say("tinyguest: watching %s (%s)", path, name)
	opened(name)
	buf := make([]byte, 64*inputEvSize)
	for {
		n, err := f.Read(buf)
		if err != nil {
			return err
		}
		for ev := buf[:n-n%inputEvSize]; len(ev) >= inputEvSize; ev = ev[inputEvSize:] {
			typ := binary.LittleEndian.Uint16(ev[16:])
			code := binary.LittleEndian.Uint16(ev[18:])
			value := int32(binary.LittleEndian.Uint32(ev[20:]))
			if typ == evKey && code == keyPower && value == 1 {
				select {
				case pressed <- path + " (" + name + ")":
				default:
				}
			}
		}
	}
}

// deviceName returns the name of an input device (EVIOCGNAME), or "?".
func deviceName(f *os.File) string {
	var b [256]byte
	req := uintptr(2<<30 | len(b)<<16 | 'E'<<8 | 0x06) // _IOC(_IOC_READ, 'E', 0x06, len)
	n, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), req, uintptr(unsafe.Pointer(&b[0])))
	if errno != 0 || n == 0 {
		return "?"
	}
	return strings.TrimRight(string(b[:n]), "\x00")
}
