package tinyguest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"
)

// Files of the isolinux and syslinux-common packages.
const (
	isolinuxBin = "/usr/lib/ISOLINUX/isolinux.bin"
	ldlinuxC32  = "/usr/lib/syslinux/modules/bios/ldlinux.c32"
)

// kernelMeta is the Debian metapackage whose dependency names the current kernel package.
const kernelMeta = "linux-image-amd64"

// guestModules are the modules the guest loads, with their dependencies (resolved again from each module's
// .modinfo, so a kernel with other dependencies still works): virtio PCI transport and block device for
// /dev/vda, evdev for /dev/input/event*, the ACPI button driver that turns the ACPI power button into a
// KEY_POWER input event, and AHCI with the SCSI cdrom driver for the SATA cdroms libvirt attaches (a NoCloud
// seed is one; the guest reads its ISO 9660 in Go, so no filesystem module is needed). Builtin modules are
// skipped.
var guestModules = []string{
	"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_blk",
	"evdev", "button", "ahci", "sr_mod",
}

// kernelCmdline is the kernel command line: serial and VGA consoles (the serial one last, so /dev/console
// and kernel panics go there), no boot noise, and an immediate reboot on panic (QEMU runs with -no-reboot,
// so a panicking guest ends the QEMU process instead of hanging).
const kernelCmdline = "console=tty0 console=ttyS0,115200 quiet panic=-1"

// guestInitPkg is the import path of the guest's /init.
const guestInitPkg = "github.com/openvair/openvair/internal/testenv/tinyguest/guestinit"

// Per-command time limits.
const (
	shortCmdTimeout = time.Minute
	longCmdTimeout  = 5 * time.Minute
)

// checkTools reports the first missing tool or file as an unavailableError with the command that installs it.
func checkTools() error {
	for _, bin := range []string{"apt-get", "apt-cache", "dpkg-deb"} {
		if _, err := exec.LookPath(bin); err != nil {
			return unavailable("%s not found: the tiny guest is built from Debian packages (needs a Debian host with apt and dpkg)", bin)
		}
	}
	if _, err := exec.LookPath("xorriso"); err != nil {
		return unavailable("xorriso not installed: apt-get install -y --no-install-recommends xorriso")
	}
	for _, f := range []struct{ path, pkg string }{{isolinuxBin, "isolinux"}, {ldlinuxC32, "syslinux-common"}} {
		if !isFile(f.path) {
			return unavailable("%s missing: apt-get install -y --no-install-recommends %s", f.path, f.pkg)
		}
	}
	if _, err := goBinary(); err != nil {
		return err
	}
	return nil
}

// goBinary returns the go command of the toolchain that built the test (runtime.GOROOT), or the one on PATH.
func goBinary() (string, error) {
	//lint:ignore SA1019 the test binary's own toolchain is wanted; PATH is the fallback when GOROOT is unknown.
	if root := runtime.GOROOT(); root != "" {
		if p := filepath.Join(root, "bin", "go"); isFile(p) {
			return p, nil
		}
	}
	p, err := exec.LookPath("go")
	if err != nil {
		return "", unavailable("no go toolchain found to build the guest's /init (GOROOT unknown and go not on PATH)")
	}
	return p, nil
}

// run runs a command with fixed arguments and a time limit, returning its standard output; the error carries
// the standard error.
func run(ctx context.Context, limit time.Duration, dir string, env []string, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

var (
	dependsRE = regexp.MustCompile(`(?m)^Depends:.*?\b(linux-image-[0-9][^\s,(]*)(?:\s*\(=\s*([^\s)]+)\))?`)
	versionRE = regexp.MustCompile(`(?m)^Version:\s*(\S+)\s*$`)
)

// kernelPackage returns the name and candidate version of the kernel package linux-image-amd64 depends on.
// Debian's metapackage names the exact version (Depends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)), so one
// apt-cache call (about a second here) usually answers both.
func kernelPackage(ctx context.Context) (pkg, version string, err error) {
	out, err := run(ctx, shortCmdTimeout, "", nil, "apt-cache", "show", "--no-all-versions", kernelMeta)
	m := dependsRE.FindSubmatch(out)
	if err != nil || m == nil {
		return "", "", unavailable("cannot resolve the kernel package from %s (run apt-get update first): %v", kernelMeta, err)
	}
	pkg, version = string(m[1]), string(m[2])
	if version != "" {
		return pkg, version, nil
	}
	out, err = run(ctx, shortCmdTimeout, "", nil, "apt-cache", "show", "--no-all-versions", pkg)
	v := versionRE.FindSubmatch(out)
	if err != nil || v == nil {
		return "", "", unavailable("no candidate version of %s (run apt-get update first): %v", pkg, err)
	}
	return pkg, string(v[1]), nil
}

// build builds the ISO into out.
func build(ctx context.Context, pkg, out string, logf func(string, ...any)) error {
	work, err := os.MkdirTemp("", "tinyguest-build-")
	if err != nil {
		return fmt.Errorf("tinyguest: %w", err)
	}
	defer os.RemoveAll(work)

	// The kernel and its modules.
	t0 := time.Now()
	if _, err := run(ctx, longCmdTimeout, work, nil, "apt-get", "download", "-o", "APT::Sandbox::User=root", pkg); err != nil {
		return unavailable("download the kernel package: %v", err)
	}
	debs, _ := filepath.Glob(filepath.Join(work, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("tinyguest: apt-get download %s left %d .deb files", pkg, len(debs))
	}
	k, order, err := extractKernel(ctx, debs[0])
	if err != nil {
		return err
	}
	if err := os.Remove(debs[0]); err != nil {
		return fmt.Errorf("tinyguest: %w", err)
	}
	logf("tinyguest: kernel %s: modules %v (downloaded and extracted in %v)", k.release, order, time.Since(t0).Round(time.Millisecond))

	// The guest's /init.
	goBin, err := goBinary()
	if err != nil {
		return err
	}
	initPath := filepath.Join(work, "init")
	env := append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if _, err := run(ctx, longCmdTimeout, moduleDir(), env, goBin, "build", "-trimpath", "-ldflags=-s -w",
		"-o", initPath, guestInitPkg); err != nil {
		return fmt.Errorf("tinyguest: build the guest's /init: %w", err)
	}
	initBin, err := os.ReadFile(initPath)
	if err != nil {
		return fmt.Errorf("tinyguest: %w", err)
	}

	// The initramfs.
	var initrd bytes.Buffer
	if err := writeInitramfs(&initrd, initBin, k, order); err != nil {
		return err
	}

	// The ISO tree and the ISO.
	tree := filepath.Join(work, "iso")
	cfg := "DEFAULT tinyguest\nPROMPT 0\nTIMEOUT 0\nLABEL tinyguest\n  KERNEL /vmlinuz\n" +
		"  APPEND " + kernelCmdline + " initrd=/initrd.gz\n"
	isolinux, err := os.ReadFile(isolinuxBin)
	if err != nil {
		return fmt.Errorf("tinyguest: %w", err)
	}
	ldlinux, err := os.ReadFile(ldlinuxC32)
	if err != nil {
		return fmt.Errorf("tinyguest: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"isolinux/isolinux.bin", isolinux},
		{"isolinux/ldlinux.c32", ldlinux},
		{"isolinux/isolinux.cfg", []byte(cfg)},
		{"vmlinuz", k.vmlinuz},
		{"initrd.gz", initrd.Bytes()},
	} {
		p := filepath.Join(tree, filepath.FromSlash(f.name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("tinyguest: %w", err)
		}
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return fmt.Errorf("tinyguest: %w", err)
		}
	}
	_ = os.Remove(out) // xorriso would treat an existing file as an image to append to
	if _, err := run(ctx, longCmdTimeout, work, nil, "xorriso", "-as", "mkisofs", "-quiet", "-o", out,
		"-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4",
		"-boot-info-table", "-R", "-V", "TINYGUEST", tree); err != nil {
		return fmt.Errorf("tinyguest: %w", err)
	}
	return nil
}

// moduleDir returns a directory inside this module, for go build: the directory of this source file when it
// exists (tests built without -trimpath), else the working directory (go test runs tests in their package
// directory, which is inside the module).
func moduleDir() string {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		if st, err := os.Stat(filepath.Dir(file)); err == nil && st.IsDir() {
			return filepath.Dir(file)
		}
	}
	wd, _ := os.Getwd()
	return wd
}

// kernel is what the guest needs from a kernel package.
type kernel struct {
	release string            // e.g. 6.1.0-57-amd64
	vmlinuz []byte            // boot/vmlinuz-*
	builtin map[string]bool   // module names built into the kernel
	known   map[string]bool   // every loadable module name in the package
	modules map[string]module // the modules read so far, by name
}

type module struct {
	data []byte   // uncompressed .ko
	deps []string // from .modinfo depends=
}

var modulePathRE = regexp.MustCompile(`^(?:\./)?(?:usr/)?lib/modules/([^/]+)/(.+)$`)

// moduleName turns a module file name into a module name ("virtio_pci.ko.gz" -> "virtio_pci"), or "".
func moduleName(file string) (name string, gz bool) {
	base := path.Base(file)
	for _, ext := range []string{".ko", ".ko.gz", ".ko.xz", ".ko.zst"} {
		if strings.HasSuffix(base, ext) {
			return strings.ReplaceAll(strings.TrimSuffix(base, ext), "-", "_"), ext == ".ko.gz"
		}
	}
	return "", false
}

// extractKernel reads the kernel package and returns the kernel with the guest's modules, and the order in
// which to load them (dependencies first, builtins left out).
func extractKernel(ctx context.Context, deb string) (*kernel, []string, error) {
	want := map[string]bool{}
	for _, m := range guestModules {
		want[m] = true
	}
	// One pass reads everything guestModules names; a kernel whose modules need others takes another pass.
	for pass := 0; pass < 4; pass++ {
		k, err := scanDeb(ctx, deb, want)
		if err != nil {
			return nil, nil, err
		}
		order, missing, err := loadOrder(k)
		if err != nil {
			return nil, nil, err
		}
		if len(missing) == 0 {
			return k, order, nil
		}
		for _, m := range missing {
			want[m] = true
		}
	}
	return nil, nil, fmt.Errorf("tinyguest: module dependencies of %v do not settle", guestModules)
}

// loadOrder orders the guest modules and their dependencies, dependencies first. missing lists dependencies
// that exist in the package but were not read yet.
func loadOrder(k *kernel) (order, missing []string, err error) {
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, from string) error
	visit = func(name, from string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("tinyguest: module dependency cycle at %s", name)
		case 2:
			return nil
		}
		state[name] = 1
		defer func() { state[name] = 2 }()
		if k.builtin[name] {
			return nil
		}
		m, ok := k.modules[name]
		if !ok {
			if k.known[name] {
				missing = append(missing, name)
				return nil
			}
			return fmt.Errorf("tinyguest: kernel %s has no module %s (needed by %s), neither builtin nor loadable", k.release, name, from)
		}
		for _, d := range m.deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		order = append(order, name)
		return nil
	}
	for _, name := range guestModules {
		if err := visit(name, "the guest"); err != nil {
			return nil, nil, err
		}
	}
	return order, missing, nil
}

// scanDeb streams the package's file system tree (dpkg-deb --fsys-tarfile) and keeps the kernel image,
// modules.builtin and the modules in want.
func scanDeb(ctx context.Context, deb string, want map[string]bool) (*kernel, error) {
	ctx, cancel := context.WithTimeout(ctx, longCmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("tinyguest: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("tinyguest: dpkg-deb: %w", err)
	}
	k, scanErr := scanTar(stdout, want)
	if scanErr != nil {
		_, _ = io.Copy(io.Discard, stdout) // let dpkg-deb finish
	}
	waitErr := cmd.Wait()
	if scanErr != nil {
		return nil, scanErr
	}
	if waitErr != nil {
		return nil, fmt.Errorf("tinyguest: dpkg-deb --fsys-tarfile %s: %w: %s", deb, waitErr, bytes.TrimSpace(stderr.Bytes()))
	}
	return k, nil
}

func scanTar(r io.Reader, want map[string]bool) (*kernel, error) {
	k := &kernel{builtin: map[string]bool{}, known: map[string]bool{}, modules: map[string]module{}}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("tinyguest: read kernel package: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		if strings.HasPrefix(name, "boot/vmlinuz-") {
			if k.vmlinuz, err = io.ReadAll(tr); err != nil {
				return nil, fmt.Errorf("tinyguest: read %s: %w", name, err)
			}
			k.release = strings.TrimPrefix(name, "boot/vmlinuz-")
			continue
		}
		m := modulePathRE.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		if m[2] == "modules.builtin" {
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("tinyguest: read %s: %w", name, err)
			}
			for _, line := range strings.Fields(string(b)) {
				if n, _ := moduleName(line); n != "" {
					k.builtin[n] = true
				}
			}
			continue
		}
		mod, gz := moduleName(m[2])
		if mod == "" {
			continue
		}
		k.known[mod] = true
		if !want[mod] {
			continue
		}
		var src io.Reader = tr
		switch {
		case gz:
			zr, err := gzip.NewReader(tr)
			if err != nil {
				return nil, fmt.Errorf("tinyguest: %s: %w", name, err)
			}
			src = zr
		case !strings.HasSuffix(m[2], ".ko"):
			return nil, fmt.Errorf("tinyguest: %s: xz and zstd compressed modules are not supported (this kernel has no in-kernel module decompression to rely on either; add a decompressor)", name)
		}
		data, err := io.ReadAll(src)
		if err != nil {
			return nil, fmt.Errorf("tinyguest: read %s: %w", name, err)
		}
		deps, err := moduleDeps(data)
		if err != nil {
			return nil, fmt.Errorf("tinyguest: %s: %w", name, err)
		}
		k.modules[mod] = module{data: data, deps: deps}
	}
	if k.vmlinuz == nil {
		return nil, errors.New("tinyguest: the kernel package has no boot/vmlinuz-*")
	}
	return k, nil
}

// moduleDeps returns the depends= entry of a module's .modinfo section.
func moduleDeps(ko []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, fmt.Errorf("not an ELF module: %w", err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("no .modinfo section")
	}
	info, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo: %w", err)
	}
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d = strings.TrimSpace(d); d != "" {
					deps = append(deps, strings.ReplaceAll(d, "-", "_"))
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}

// writeInitramfs writes the gzip'ed newc initramfs: /init, the modules in load order under /modules with
// their order in /modules/order, the mount points, and /dev/console (so the kernel gives /init a console on
// its standard file descriptors before devtmpfs is mounted).
func writeInitramfs(w io.Writer, initBin []byte, k *kernel, order []string) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("tinyguest: %w", err)
	}
	cw := newCPIOWriter(zw)
	for _, d := range []string{"dev", "proc", "sys", "modules"} {
		if err := cw.Dir(d, 0o755); err != nil {
			return err
		}
	}
	if err := cw.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	if err := cw.File("init", 0o755, initBin); err != nil {
		return err
	}
	var list strings.Builder
	for _, name := range order {
		p := "modules/" + name + ".ko"
		if err := cw.File(p, 0o644, k.modules[name].data); err != nil {
			return err
		}
		fmt.Fprintf(&list, "/%s\n", p)
	}
	if err := cw.File("modules/order", 0o644, []byte(list.String())); err != nil {
		return err
	}
	if err := cw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("tinyguest: gzip initramfs: %w", err)
	}
	return nil
}
