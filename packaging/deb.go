// Package packaging builds the Debian package of openvair-server from a built binary, with nfpm used as a
// library. It is a module of its own (github.com/openvair/openvair/packaging), so the SDK's go.mod does not
// carry nfpm's dependencies; it never imports the SDK, only packages the binary it is given.
//
// The package installs:
//
//	/usr/bin/openvair-server                                    the binary (0755)
//	/lib/systemd/system/openvair-server.service                 the unit (0644), see openvair-server.service
//	/etc/openvair/server.toml                                   the configuration (0600, conffile, noreplace)
//	/usr/share/doc/openvair-server/examples/hardening.conf      an optional sandboxing drop-in (0644)
//
// It depends on nothing and recommends libvirt-daemon-system, qemu-system-x86 and qemu-utils. Its scripts
// reload systemd when it runs, stop the service before removal, and never touch /var/lib/openvair (the
// data directory: database, tokens and the default storage's disks), not even on purge.
//
// Build one with the command in cmd/mkdeb, or with BuildDeb.
package packaging

import (
	"debug/elf"
	_ "embed" // the unit, configuration and scripts are embedded
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

// Paths of the installed files.
const (
	BinaryPath    = "/usr/bin/openvair-server"
	UnitPath      = "/lib/systemd/system/openvair-server.service"
	ConfigPath    = "/etc/openvair/server.toml"
	HardeningPath = "/usr/share/doc/openvair-server/examples/hardening.conf"
)

// PackageName is the name of the Debian package.
const PackageName = "openvair-server"

// Recommends are the packages the server works with on a host that runs VMs; none is mandatory (without
// libvirt the API serves storages, volumes and images and answers VM calls 503).
var Recommends = []string{"libvirt-daemon-system", "qemu-system-x86", "qemu-utils"}

var (
	//go:embed openvair-server.service
	unitFile []byte
	//go:embed server.toml
	configFile []byte
	//go:embed hardening.conf
	hardeningFile []byte
	//go:embed scripts/postinst.sh
	postinstScript []byte
	//go:embed scripts/prerm.sh
	prermScript []byte
	//go:embed scripts/postrm.sh
	postrmScript []byte
)

// Unit returns the systemd unit the package installs.
func Unit() []byte { return append([]byte(nil), unitFile...) }

// Hardening returns the optional sandboxing drop-in the package ships as an example.
func Hardening() []byte { return append([]byte(nil), hardeningFile...) }

// Config returns the configuration file the package installs.
func Config() []byte { return append([]byte(nil), configFile...) }

// Options describe the package to build.
type Options struct {
	// Binary is the path of the built openvair-server (a Linux ELF executable); required.
	Binary string
	// Version is the package version, such as "1.2.0", "v1.2.0" or "1.2.0-rc1" (a semantic version; a
	// pre-release becomes "1.2.0~rc1"); required.
	Version string
	// Arch is the Debian architecture (default "amd64").
	Arch string
	// OutDir is the directory the .deb is written to (default: the current directory).
	OutDir string
	// Maintainer is the Maintainer field (default "openvair developers <openvair@users.noreply.github.com>").
	Maintainer string
	// MTime is the time of every file in the package (default: SOURCE_DATE_EPOCH, or now).
	MTime time.Time
}

// Error is a package that could not be built; Op names the step.
type Error struct {
	Op  string
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	return "build " + PackageName + " package: " + e.Op + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// ErrNotExecutable reports a Binary that is not a Linux ELF executable file.
var ErrNotExecutable = errors.New("not an executable ELF file")

// BuildDeb writes <OutDir>/openvair-server_<version>_<arch>.deb and returns its path.
func BuildDeb(opt Options) (string, error) {
	if opt.Version == "" {
		return "", &Error{Op: "options", Err: errors.New("version is required")}
	}
	if opt.Arch == "" {
		opt.Arch = "amd64"
	}
	if opt.Maintainer == "" {
		opt.Maintainer = "openvair developers <openvair@users.noreply.github.com>"
	}
	if opt.OutDir == "" {
		opt.OutDir = "."
	}
	if err := checkBinary(opt.Binary, opt.Arch); err != nil {
		return "", &Error{Op: "binary " + opt.Binary, Err: err}
	}
	// nfpm reads every file from disk: the embedded ones go to a private directory first.
	tmp, err := os.MkdirTemp("", "openvair-deb-")
	if err != nil {
		return "", &Error{Op: "temporary directory", Err: err}
	}
	defer os.RemoveAll(tmp)
	src := map[string][]byte{"unit": unitFile, "server.toml": configFile, "hardening.conf": hardeningFile,
		"postinst": postinstScript, "prerm": prermScript, "postrm": postrmScript}
	for name, b := range src {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o600); err != nil {
			return "", &Error{Op: "write " + name, Err: err}
		}
	}
	file := func(src, dst string, mode fs.FileMode, typ string) *files.Content {
		return &files.Content{Source: src, Destination: dst, Type: typ,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode}}
	}
	info := nfpm.WithDefaults(&nfpm.Info{
		Name:       PackageName,
		Arch:       opt.Arch,
		Platform:   "linux",
		Version:    opt.Version,
		Section:    "admin",
		Priority:   "optional",
		Maintainer: opt.Maintainer,
		Homepage:   "https://github.com/openvair/openvair",
		MTime:      opt.MTime,
		Description: "openvair virtualization management API server\n" +
			"The reference server of the openvair SDK: a REST API (OpenAPI 3.1) that\n" +
			"manages storages, volumes, images and virtual machines through libvirt\n" +
			"and QEMU, run as the systemd service openvair-server.",
		Overridables: nfpm.Overridables{
			Recommends: Recommends,
			Contents: files.Contents{
				file(opt.Binary, BinaryPath, 0o755, files.TypeFile),
				file(filepath.Join(tmp, "unit"), UnitPath, 0o644, files.TypeFile),
				{Destination: filepath.Dir(ConfigPath), Type: files.TypeDir,
					FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: 0o755}},
				file(filepath.Join(tmp, "server.toml"), ConfigPath, 0o600, files.TypeConfigNoReplace),
				file(filepath.Join(tmp, "hardening.conf"), HardeningPath, 0o644, files.TypeFile),
			},
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(tmp, "postinst"),
				PreRemove:   filepath.Join(tmp, "prerm"),
				PostRemove:  filepath.Join(tmp, "postrm"),
			},
		},
	})
	if err := nfpm.Validate(info); err != nil {
		return "", &Error{Op: "validate", Err: err}
	}
	if err := os.MkdirAll(opt.OutDir, 0o755); err != nil {
		return "", &Error{Op: "output directory", Err: err}
	}
	path := filepath.Join(opt.OutDir, deb.Default.ConventionalFileName(info))
	out, err := os.CreateTemp(opt.OutDir, ".openvair-server-*.deb")
	if err != nil {
		return "", &Error{Op: "create", Err: err}
	}
	defer os.Remove(out.Name())
	if err := deb.Default.Package(info, out); err != nil {
		out.Close()
		return "", &Error{Op: "package", Err: err}
	}
	if err := out.Chmod(0o644); err != nil {
		out.Close()
		return "", &Error{Op: "chmod", Err: err}
	}
	if err := out.Close(); err != nil {
		return "", &Error{Op: "write", Err: err}
	}
	if err := os.Rename(out.Name(), path); err != nil {
		return "", &Error{Op: "rename", Err: err}
	}
	return path, nil
}

// machines are the ELF machines of the Debian architectures BuildDeb checks binaries against.
var machines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "i386": elf.EM_386,
	"armhf": elf.EM_ARM, "ppc64el": elf.EM_PPC64, "s390x": elf.EM_S390, "riscv64": elf.EM_RISCV}

// ErrWrongArch reports a binary built for another architecture than the package's.
var ErrWrongArch = errors.New("binary built for another architecture")

// checkBinary accepts a regular, executable Linux ELF file for the Debian architecture arch.
func checkBinary(path, arch string) error {
	if path == "" {
		return errors.New("the binary's path is required")
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return ErrNotExecutable
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotExecutable, err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("%w: ELF type %s", ErrNotExecutable, f.Type)
	}
	if m, ok := machines[arch]; ok && f.Machine != m {
		return fmt.Errorf("%w: %s, not %s (%s)", ErrWrongArch, f.Machine, m, arch)
	}
	return nil
}
