// Command openvair-server serves the openvair API (package refserver) over HTTP.
//
//	go run ./refserver/cmd/openvair-server
//
// On a fresh machine it creates ./openvair-data (or $XDG_DATA_HOME/openvair) holding a SQLite database, a
// LocalFS storage named "default" in storage/, and admin.token (mode 0600), the bearer token of the first
// administrator; it listens on 127.0.0.1:8080 and manages VMs through libvirt at qemu:///system when
// libvirtd answers (otherwise VM calls answer 503 and everything else works).
//
// Configuration comes from embedded defaults, a TOML file (-config), OPENVAIR_<KEY> environment variables
// and -<key> flags, later ones winning; every key can be set from each source (see -help, and config in
// config.go, which declares them all). -print-config prints the effective configuration as TOML, secrets
// redacted. `-add-token reader` adds a read-only token and prints it once. SIGINT and SIGTERM shut the
// server down gracefully.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/openvair/openvair"
	_ "github.com/openvair/openvair/driver/btrfs"   // registers the "btrfs" storage backend (reflink clones)
	_ "github.com/openvair/openvair/driver/libvirt" // registers the "libvirt" hypervisor
	_ "github.com/openvair/openvair/driver/localfs" // registers the "localfs" storage backend
	_ "github.com/openvair/openvair/driver/nfs"     // registers the "nfs" storage backend
	"github.com/openvair/openvair/internal/telemetry/exporter"
	"github.com/openvair/openvair/refserver"
	_ "github.com/openvair/openvair/repo/sql" // registers the "sqlite:", "postgres:" and "postgresql:" stores
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "openvair-server:", err)
		os.Exit(1)
	}
}

// run runs the server until ctx ends. ready, when set, is called with the listening address.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready func(net.Addr)) error {
	cfg, opt, err := loadConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil // -help: the usage is written
	}
	if err != nil {
		return err
	}
	if opt.printConfig {
		return writeTOML(stdout, cfg)
	}
	log, err := cfg.logger(stderr)
	if err != nil {
		return err
	}
	if err := ensureDataDir(cfg.DataDir); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if opt.addToken != "" {
		return addToken(cfg.DataDir, refserver.Role(opt.addToken), opt.tokenName, stdout)
	}
	tokens, err := loadTokens(&cfg, log)
	if err != nil {
		return err
	}

	tel, shutdownTel, err := exporter.Setup(ctx, exporter.Config{Tracing: cfg.Tracing, OTLPEndpoint: cfg.OTLPEndpoint,
		ServiceName: "openvair-server", Stdout: stdout})
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := shutdownTel(sctx); err != nil {
			log.Warn("telemetry shutdown", "err", err)
		}
	}()

	sysCfg := openvair.Config{DSN: cfg.DSN, Metrics: tel.Registry, TracerProvider: tel.TracerProvider, DataDir: cfg.DataDir, StorageOptions: cfg.StorageOptions,
		MaxImageSize: cfg.MaxImageSize, MonitorInterval: cfg.MonitorInterval.Duration, Logger: log,
		DefaultCPUMode: cfg.CPUMode, DefaultCPUModel: cfg.CPUModel, Lease: cfg.Lease.Duration, Workers: cfg.Workers,
		EventRetention: cfg.EventRetention.Duration, OperationRetention: cfg.OperationRetention.Duration}
	if sysCfg.ImportAllowCIDRs, sysCfg.ImportAllowHosts, err = importAllow(cfg.ImportAllow); err != nil {
		return err
	}
	if cfg.Hypervisor == "libvirt" {
		sysCfg.Hypervisor = "libvirt"
		sysCfg.HypervisorOptions = map[string]string{"uri": cfg.LibvirtURI}
		for k, v := range cfg.LibvirtOptions {
			sysCfg.HypervisorOptions[k] = v
		}
		if cfg.DomainType != "" {
			sysCfg.HypervisorOptions["domain_type"] = cfg.DomainType
		}
		if cfg.LibvirtSocket != "" {
			sysCfg.HypervisorOptions["socket"] = cfg.LibvirtSocket
		}
	}
	openCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	sys, err := openvair.Open(openCtx, sysCfg)
	cancel()
	if err != nil {
		return fmt.Errorf("open %s store: %w", dsnScheme(cfg.DSN), err)
	}
	defer sys.Close()
	log.Info("store opened", "store", dsnScheme(cfg.DSN), "data_dir", cfg.DataDir)

	if cfg.DefaultStorage {
		ensureDefaultStorage(ctx, sys, cfg.DataDir, log)
	}
	if cfg.Hypervisor == "libvirt" {
		if st := refserver.HypervisorStatus(ctx, sys); st != "ok" {
			log.Warn("libvirt is not reachable; VM calls answer 503 until it is", "uri", cfg.LibvirtURI, "reason", st)
		} else {
			log.Info("libvirt reachable", "uri", cfg.LibvirtURI)
		}
	} else {
		log.Info("no hypervisor configured; VM calls answer 503")
	}

	handler, err := refserver.New(sys, refserver.Config{Tokens: tokens, Logger: log, MaxImageSize: cfg.MaxImageSize,
		MaxBodyBytes: cfg.MaxBodyBytes, RequestTimeout: cfg.RequestTimeout.Duration, UploadTimeout: cfg.UploadTimeout.Duration,
		EventHeartbeat: cfg.EventHeartbeat.Duration, IdempotencyTTL: cfg.IdempotencyTTL.Duration,
		Metrics: tel.Registry, TracerProvider: tel.TracerProvider})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	if cfg.MetricsListen != "" {
		stopMetrics, err := serveMetrics(cfg.MetricsListen, tel, log)
		if err != nil {
			_ = ln.Close()
			return err
		}
		defer stopMetrics()
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		// Read and write deadlines are set per request by the handler: RequestTimeout for ordinary
		// requests, UploadTimeout for image uploads.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 1 << 20,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:    func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}

	runCtx, stopRun := context.WithCancel(ctx)
	monitorDone := make(chan struct{})
	go func() {
		defer close(monitorDone)
		_ = sys.Run(runCtx)
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "docs", "http://"+ln.Addr().String()+"/docs")
	if ready != nil {
		ready(ln.Addr())
	}

	select {
	case err = <-serveErr:
	case <-ctx.Done():
		log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.Duration)
		err = srv.Shutdown(sctx)
		cancel()
		<-serveErr
	}
	stopRun()
	<-monitorDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	log.Info("stopped")
	return err
}

// serveMetrics serves GET /metrics without a token on its own listener (the scrape address), until the
// returned func is called.
func serveMetrics(addr string, tel *exporter.Telemetry, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics_listen: %w", err)
	}
	srv := &http.Server{Handler: tel.ScrapeHandler(), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener", "err", err)
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String())
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	}, nil
}

// importAllow splits the import_allow entries into address ranges (a CIDR, or one address) and host names.
func importAllow(entries []string) ([]netip.Prefix, []string, error) {
	var cidrs []netip.Prefix
	var hosts []string
	for _, e := range entries {
		if p, err := netip.ParsePrefix(e); err == nil {
			cidrs = append(cidrs, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(e); err == nil {
			cidrs = append(cidrs, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		if e == "" || strings.ContainsAny(e, "/:@ ") {
			return nil, nil, fmt.Errorf("import_allow: %q is neither a CIDR range, an address nor a host name", e)
		}
		hosts = append(hosts, strings.ToLower(e))
	}
	return cidrs, hosts, nil
}
