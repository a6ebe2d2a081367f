// Package pg gives integration tests real PostgreSQL databases: a throwaway cluster started from the
// local binaries (initdb + postgres as the postgres user when the test runs as root, loopback only, fsync
// off, in a temporary directory), or the server named by OPENVAIR_TEST_PG_DSN when that is set. Every
// database handed out is fresh and dropped when its test ends, so tests are isolated.
//
// A test binary shares one cluster between its tests; call Main from TestMain so it is stopped and its
// directory removed at the end (it dies with the test process in any case: it runs with a parent-death
// signal). NewCluster starts a dedicated cluster a test may stop, to see what a dead database does.
package pg

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openvair/openvair/internal/testenv"
	"github.com/uptrace/bun/driver/pgdriver"
)

// EnvDSN names the environment variable with the DSN of an existing server (a superuser or a role that
// may CREATE DATABASE), used instead of a throwaway cluster.
const EnvDSN = "OPENVAIR_TEST_PG_DSN"

const (
	readyTimeout = 30 * time.Second
	stopTimeout  = 15 * time.Second
)

// BinDir returns the directory holding initdb and postgres (the newest /usr/lib/postgresql/N/bin, or the
// PATH), or "" when PostgreSQL is not installed.
func BinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if isFile(filepath.Join(d, "initdb")) && isFile(filepath.Join(d, "postgres")) {
			return d
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if d := filepath.Dir(p); isFile(filepath.Join(d, "postgres")) {
			return d
		}
	}
	return ""
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	dir    string
	port   int
	cmd    *exec.Cmd
	waited chan struct{}
	once   sync.Once
}

// NewCluster starts a dedicated cluster for one test and stops it when the test ends. It calls
// testenv.Unavailable when PostgreSQL is not installed (or, as root, there is no postgres user).
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := startCluster()
	if err != nil {
		var u unavailable
		if errors.As(err, &u) {
			testenv.Unavailable(t, "%v", err)
		}
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	return c
}

// AdminDSN is the DSN of the cluster's postgres database as the postgres superuser.
func (c *Cluster) AdminDSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// Port is the TCP port the cluster listens on (127.0.0.1).
func (c *Cluster) Port() int { return c.port }

// Stop shuts the cluster down (fast shutdown, then SIGKILL) and removes its directory. It may be called
// more than once.
func (c *Cluster) Stop() error {
	var err error
	c.once.Do(func() {
		_ = c.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-c.waited:
		case <-time.After(stopTimeout):
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.waited
		}
		err = os.RemoveAll(c.dir)
	})
	return err
}

// unavailable is a missing component (as opposed to a failure).
type unavailable struct{ msg string }

func (u unavailable) Error() string { return u.msg }

// credential returns who runs the server: the postgres user when root (initdb and postgres refuse root).
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, unavailable{"running as root and there is no postgres user to run PostgreSQL as"}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func startCluster() (*Cluster, error) {
	bin := BinDir()
	if bin == "" {
		return nil, unavailable{"PostgreSQL binaries (initdb, postgres) not installed (apt-get install postgresql)"}
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ovpg")
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Cluster, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fail(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"), "--auth=trust", "--no-sync",
		"-E", "UTF8", "--locale=C", "-U", "postgres")
	initdb.Dir = dir
	initdb.Env = []string{"LANG=C", "PATH=" + bin + ":/usr/bin:/bin"}
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %w: %s", err, out))
	}
	var lastErr error
	for range 3 { // a free port may be taken between choosing it and binding it
		c, err := launch(ctx, bin, dir, cred)
		if err == nil {
			return c, nil
		}
		lastErr = err
	}
	return fail(lastErr)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// launch starts postgres on the initialized data directory and waits until it accepts connections.
func launch(ctx context.Context, bin, dir string, cred *syscall.Credential) (*Cluster, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer func() { _ = logf.Close() }()
	if cred != nil {
		_ = logf.Chown(int(cred.Uid), int(cred.Gid))
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", filepath.Join(dir, "data"), "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
		"-c", "max_connections=300", "-c", "max_pred_locks_per_transaction=256")
	cmd.Dir = dir
	cmd.Env = []string{"LANG=C"}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, port: port, cmd: cmd, waited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.waited) }()
	for {
		err := ping(ctx, c.AdminDSN())
		if err == nil {
			return c, nil
		}
		select {
		case <-c.waited:
			log, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("postgres exited during start-up: %s", tail(string(log)))
		case <-ctx.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-c.waited
			log, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("postgres not ready after %v (%v): %s", readyTimeout, err, tail(string(log)))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func tail(s string) string {
	if len(s) > 2000 {
		return "..." + s[len(s)-2000:]
	}
	return s
}

func open(dsn string) *sql.DB {
	return sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dsn)))
}

func ping(ctx context.Context, dsn string) error {
	db := open(dsn)
	defer func() { _ = db.Close() }()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return db.PingContext(pctx)
}

var shared struct {
	once sync.Once
	c    *Cluster
	err  error
}

// Start returns the DSN of a fresh, empty database that is dropped when the test ends: on the server
// OPENVAIR_TEST_PG_DSN names when set, otherwise on this test binary's shared throwaway cluster. It calls
// testenv.Unavailable when there is neither.
func Start(t testing.TB) string {
	t.Helper()
	return CreateDatabase(t, Admin(t))
}

// Admin returns the DSN of the server Start uses, as a role that may create databases: the one
// OPENVAIR_TEST_PG_DSN names, or the shared throwaway cluster's (started on first use).
func Admin(t testing.TB) string {
	t.Helper()
	if admin := os.Getenv(EnvDSN); admin != "" {
		return admin
	}
	shared.once.Do(func() { shared.c, shared.err = startCluster() })
	if shared.err != nil {
		var u unavailable
		if errors.As(shared.err, &u) {
			testenv.Unavailable(t, "%v", shared.err)
		}
		t.Fatalf("start PostgreSQL: %v", shared.err)
	}
	return shared.c.AdminDSN()
}

// CreateDatabase creates a fresh database on the server of adminDSN, drops it when the test ends, and
// returns its DSN.
func CreateDatabase(t testing.TB, adminDSN string) string {
	t.Helper()
	dsn, drop, err := NewDatabase(adminDSN)
	if err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Logf("drop test database: %v", err)
		}
	})
	return dsn
}

// NewDatabase creates a fresh database on the server of adminDSN and returns its DSN and the function
// that drops it, for fixtures that outlive one test (drop them from TestMain through Main's hooks).
func NewDatabase(adminDSN string) (dsn string, drop func() error, err error) {
	u, err := url.Parse(adminDSN)
	if err != nil {
		return "", nil, fmt.Errorf("bad PostgreSQL DSN: %w", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "ovtest_" + hex.EncodeToString(b)
	if err := adminExec(adminDSN, "CREATE DATABASE "+name); err != nil {
		return "", nil, err
	}
	drop = func() error { return adminExec(adminDSN, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") }
	u.Path = "/" + name
	if !strings.Contains(u.RawQuery, "sslmode") {
		q := u.Query()
		q.Set("sslmode", "disable")
		u.RawQuery = q.Encode()
	}
	return u.String(), drop, nil
}

func adminExec(adminDSN, stmt string) error {
	db := open(adminDSN)
	defer func() { _ = db.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := db.ExecContext(ctx, stmt)
	return err
}

// Main runs the tests of a package, then the hooks (for example dropping fixtures made with
// NewDatabase), then stops the shared cluster: call it from TestMain, os.Exit(pg.Main(m)).
func Main(m *testing.M, after ...func()) int {
	code := m.Run()
	for _, f := range after {
		f()
	}
	if shared.c != nil {
		_ = shared.c.Stop()
	}
	return code
}
