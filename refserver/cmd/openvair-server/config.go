package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/openvair/openvair/internal/hostuser"
	"github.com/openvair/openvair/internal/secret"
	"github.com/openvair/openvair/refserver"
)

// config is the server's configuration. Sources, later ones winning: the embedded defaults, the TOML file
// (-config or OPENVAIR_CONFIG), environment variables (OPENVAIR_*), command-line flags.
type config struct {
	Listen         string            `toml:"listen"`          // OPENVAIR_LISTEN, -listen
	DataDir        string            `toml:"data_dir"`        // OPENVAIR_DATA_DIR, -data-dir
	DSN            string            `toml:"dsn"`             // OPENVAIR_DSN, -dsn; default sqlite:///<data_dir>/openvair.db
	Hypervisor     string            `toml:"hypervisor"`      // "libvirt" (default) or "none"
	LibvirtURI     string            `toml:"libvirt_uri"`     // OPENVAIR_LIBVIRT_URI, -libvirt-uri
	LibvirtSocket  string            `toml:"libvirt_socket"`  // OPENVAIR_LIBVIRT_SOCKET, -libvirt-socket
	LibvirtOptions map[string]string `toml:"libvirt_options"` // other driver options (console_log_dir, qemu_uid, ...)
	DomainType     string            `toml:"domain_type"`     // OPENVAIR_DOMAIN_TYPE: kvm or qemu (TCG); default kvm when the host offers it
	CPUMode        string            `toml:"cpu_mode"`        // OPENVAIR_CPU_MODE: default CPU mode of new VMs, host-model (default), host-passthrough or custom
	CPUModel       string            `toml:"cpu_model"`       // OPENVAIR_CPU_MODEL: the model for cpu_mode custom (e.g. qemu64)
	StorageOptions map[string]string `toml:"storage_options"` // options of the storage drivers (file_mode, ...)
	AdminToken     string            `toml:"admin_token"`     // OPENVAIR_ADMIN_TOKEN; default generated into <data_dir>/admin.token
	Tokens         []refserver.Token `toml:"tokens"`          // more tokens, stored as SHA-256
	DefaultStorage *bool             `toml:"default_storage"` // create a LocalFS storage "default" in <data_dir>/storage when there is none (default true)
	MaxImageSize   int64             `toml:"max_image_size"`  // bytes (default 64 GiB)
	// ImportAllow opens image imports from URLs to addresses the SSRF guard refuses by default (loopback,
	// private, link-local, ...): CIDR ranges ("10.20.0.0/16"), addresses, or host names of private mirrors.
	ImportAllow     []string `toml:"import_allow"`
	MaxBodyBytes    int64    `toml:"max_body_bytes"`   // JSON request bodies (default 1 MiB)
	RequestTimeout  duration `toml:"request_timeout"`  // default 5m
	UploadTimeout   duration `toml:"upload_timeout"`   // default 6h
	ShutdownTimeout duration `toml:"shutdown_timeout"` // default 30s
	MonitorInterval duration `toml:"monitor_interval"` // default 10s
	// Operations and events (several processes may share one PostgreSQL store).
	Lease              duration `toml:"lease"`               // OPENVAIR_LEASE: a process's claim on its operations and the monitors (default 30s)
	Workers            int      `toml:"workers"`             // asynchronous operations run at once by this process (default 10)
	EventRetention     duration `toml:"event_retention"`     // default 168h
	OperationRetention duration `toml:"operation_retention"` // default 168h
	EventHeartbeat     duration `toml:"event_heartbeat"`     // comment lines on idle event streams (default 15s)
	IdempotencyTTL     duration `toml:"idempotency_ttl"`     // how long Idempotency-Key outcomes are kept (default 24h)
	LogLevel           string   `toml:"log_level"`           // OPENVAIR_LOG_LEVEL, -log-level: debug, info, warn, error
	LogFormat          string   `toml:"log_format"`          // text (default) or json
}

// duration is a time.Duration written as "30s" in TOML.
type duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	d.Duration = v
	return err
}

// defaults returns the embedded defaults, which work on a fresh machine.
func defaults(getenv func(string) string) config {
	dataDir := "./openvair-data"
	if x := getenv("XDG_DATA_HOME"); x != "" {
		dataDir = filepath.Join(x, "openvair")
	}
	return config{
		Listen:          "127.0.0.1:8080",
		DataDir:         dataDir,
		Hypervisor:      "libvirt",
		LibvirtURI:      "qemu:///system",
		RequestTimeout:  duration{5 * time.Minute},
		UploadTimeout:   duration{6 * time.Hour},
		ShutdownTimeout: duration{30 * time.Second},
		MonitorInterval: duration{10 * time.Second},
		LogLevel:        "info",
		LogFormat:       "text",
	}
}

// options are what the command line asks for besides the configuration.
type options struct {
	addToken  string // role of a token to add, then exit
	tokenName string
}

// loadConfig merges the defaults, the TOML file, the environment and the flags.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (config, options, error) {
	cfg := defaults(getenv)
	var opt options
	fs := flag.NewFlagSet("openvair-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", getenv("OPENVAIR_CONFIG"), "TOML configuration file (env OPENVAIR_CONFIG)")
	listen := fs.String("listen", "", "address to listen on (env OPENVAIR_LISTEN; default "+cfg.Listen+")")
	dataDir := fs.String("data-dir", "", "data directory: database, admin token, default storage (env OPENVAIR_DATA_DIR; default "+cfg.DataDir+")")
	dsn := fs.String("dsn", "", "store DSN: sqlite:///path/file.db, postgres://..., memory: (env OPENVAIR_DSN; default SQLite in the data directory)")
	uri := fs.String("libvirt-uri", "", "libvirt URI, or none for no hypervisor (env OPENVAIR_LIBVIRT_URI; default "+cfg.LibvirtURI+")")
	sock := fs.String("libvirt-socket", "", "libvirtd unix socket (env OPENVAIR_LIBVIRT_SOCKET; default: the URI's usual socket)")
	level := fs.String("log-level", "", "debug, info, warn or error (env OPENVAIR_LOG_LEVEL)")
	fs.StringVar(&opt.addToken, "add-token", "", "add a token with this role (admin or reader) to <data-dir>/tokens.json, print it once and exit")
	fs.StringVar(&opt.tokenName, "token-name", "", "name of the token -add-token adds (default: <role>-<date>)")
	if err := fs.Parse(args); err != nil {
		return cfg, opt, err
	}
	if fs.NArg() > 0 {
		return cfg, opt, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *configPath != "" {
		md, err := toml.DecodeFile(*configPath, &cfg)
		if err != nil {
			return cfg, opt, fmt.Errorf("config %s: %w", *configPath, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			return cfg, opt, fmt.Errorf("config %s: unknown keys %v", *configPath, und)
		}
	}
	for env, dst := range map[string]*string{
		"OPENVAIR_LISTEN": &cfg.Listen, "OPENVAIR_DATA_DIR": &cfg.DataDir, "OPENVAIR_DSN": &cfg.DSN,
		"OPENVAIR_LIBVIRT_URI": &cfg.LibvirtURI, "OPENVAIR_LIBVIRT_SOCKET": &cfg.LibvirtSocket,
		"OPENVAIR_ADMIN_TOKEN": &cfg.AdminToken, "OPENVAIR_LOG_LEVEL": &cfg.LogLevel,
		"OPENVAIR_DOMAIN_TYPE": &cfg.DomainType, "OPENVAIR_CPU_MODE": &cfg.CPUMode, "OPENVAIR_CPU_MODEL": &cfg.CPUModel,
	} {
		if v := getenv(env); v != "" {
			*dst = v
		}
	}
	if v := getenv("OPENVAIR_LEASE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return cfg, opt, fmt.Errorf("OPENVAIR_LEASE: want a positive duration such as 30s, got %q", v)
		}
		cfg.Lease.Duration = d
	}
	if v := getenv("OPENVAIR_MAX_IMAGE_SIZE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return cfg, opt, fmt.Errorf("OPENVAIR_MAX_IMAGE_SIZE: %w", err)
		}
		cfg.MaxImageSize = n
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, p := range map[string]struct{ dst, val *string }{
		"listen": {&cfg.Listen, listen}, "data-dir": {&cfg.DataDir, dataDir}, "dsn": {&cfg.DSN, dsn},
		"libvirt-uri": {&cfg.LibvirtURI, uri}, "libvirt-socket": {&cfg.LibvirtSocket, sock}, "log-level": {&cfg.LogLevel, level},
	} {
		if set[name] {
			*p.dst = *p.val
		}
	}
	if cfg.LibvirtURI == "none" {
		cfg.Hypervisor = "none"
	}
	if cfg.DataDir == "" {
		return cfg, opt, errors.New("data directory is empty")
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return cfg, opt, err
	}
	cfg.DataDir = abs
	if cfg.DSN == "" {
		cfg.DSN = "sqlite://" + filepath.Join(cfg.DataDir, "openvair.db")
	}
	return cfg, opt, nil
}

// logger builds the slog logger the configuration asks for.
func (c *config) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", c.LogLevel, err)
	}
	o := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(c.LogFormat) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", c.LogFormat)
}

// ensureDataDir creates the data directory when missing and makes it 0700, or, on a host with a QEMU user,
// 0710 with that user's group, so QEMU can reach the default storage below it (see internal/hostuser)
// while nothing in it can be listed or read by others, whoever made it. The files that hold secrets
// (database, tokens, key) are made 0600.
func ensureDataDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	gid := -1
	if id, ok := hostuser.DefaultQEMU(); ok {
		gid = id.GID
	}
	if err := hostuser.MkdirTraversable(dir, gid); err != nil {
		return err
	}
	mode := os.FileMode(0o700)
	if gid >= 0 {
		mode = hostuser.TraverseMode
	}
	if err := os.Chmod(dir, mode); err != nil {
		return err
	}
	if gid >= 0 {
		// The default storage made at an earlier start, perhaps before libvirt (and its QEMU user) was
		// installed: QEMU must reach it now.
		if err := hostuser.AllowTraverse(filepath.Join(dir, defaultStorageDir), gid); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	// Files that hold secrets are private, whoever made them or the directory (the SQLite store creates its
	// database 0600 itself).
	for _, name := range []string{"openvair.db", adminTokenFile, tokensFile, secret.KeyFile} {
		if err := os.Chmod(filepath.Join(dir, name), 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
