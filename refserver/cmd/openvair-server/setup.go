package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/internal/hostuser"
	"github.com/openvair/openvair/refserver"
	"github.com/openvair/openvair/storage"
)

const (
	adminTokenFile = "admin.token" // the first administrator's token, mode 0600
	tokensFile     = "tokens.json" // tokens added with -add-token: names, roles and SHA-256 hashes only
	// defaultStorageDir is the directory, in the data directory, of the LocalFS storage made at first start.
	defaultStorageDir = "storage"
)

// loadTokens gathers the tokens the server accepts: the admin token (given in the configuration, or read
// from <data-dir>/admin.token, or generated there on first start), the configured tokens and those of
// <data-dir>/tokens.json. Only hashes are kept; the log names the file, never a token.
func loadTokens(cfg *config, log *slog.Logger) (*refserver.Tokens, error) {
	var list []refserver.Token
	secret := cfg.AdminToken
	switch {
	case secret != "":
		log.Info("admin token taken from the configuration")
	default:
		path := filepath.Join(cfg.DataDir, adminTokenFile)
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			secret = strings.TrimSpace(string(b))
			if secret == "" {
				return nil, fmt.Errorf("%s is empty; delete it to generate a new admin token", path)
			}
			log.Info("admin token read", "file", path)
		case errors.Is(err, fs.ErrNotExist):
			if secret, err = refserver.GenerateToken(); err != nil {
				return nil, err
			}
			if err := writeSecretFile(path, []byte(secret+"\n")); err != nil {
				return nil, fmt.Errorf("write admin token: %w", err)
			}
			log.Info("admin token created; read it from the file", "file", path)
		default:
			return nil, err
		}
	}
	list = append(list, refserver.Token{Name: "admin", Role: refserver.RoleAdmin, SHA256: refserver.HashToken(secret)})
	list = append(list, cfg.Tokens...)
	stored, err := readTokensFile(filepath.Join(cfg.DataDir, tokensFile))
	if err != nil {
		return nil, err
	}
	list = append(list, stored...)
	return refserver.NewTokens(list...)
}

// writeSecretFile creates path with mode 0600; it refuses to overwrite.
func writeSecretFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readTokensFile(path string) ([]refserver.Token, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var list []refserver.Token
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return list, nil
}

// addToken generates a token with the role, stores its hash in <data-dir>/tokens.json and prints the
// token once on stdout.
func addToken(dataDir string, role refserver.Role, name string, stdout io.Writer) error {
	if role != refserver.RoleAdmin && role != refserver.RoleReader {
		return fmt.Errorf("-add-token: role must be %q or %q", refserver.RoleAdmin, refserver.RoleReader)
	}
	if name == "" {
		name = string(role) + "-" + time.Now().UTC().Format("20060102T150405")
	}
	path := filepath.Join(dataDir, tokensFile)
	list, err := readTokensFile(path)
	if err != nil {
		return err
	}
	for _, t := range list {
		if t.Name == name {
			return fmt.Errorf("-add-token: a token named %q exists", name)
		}
	}
	secret, err := refserver.GenerateToken()
	if err != nil {
		return err
	}
	list = append(list, refserver.Token{Name: name, Role: role, SHA256: refserver.HashToken(secret)})
	if _, err := refserver.NewTokens(list...); err != nil {
		return err
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	if err := writeSecretFile(tmp, append(b, '\n')); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, secret)
	return err
}

// ensureDefaultStorage creates the LocalFS storage "default" in <data-dir>/storage when there is no
// storage at all. A failure is logged, not fatal.
func ensureDefaultStorage(ctx context.Context, sys *openvair.System, dataDir string, log *slog.Logger) {
	page, err := sys.Storages.List(ctx, storage.ListOptions{Limit: 1})
	if err != nil {
		log.Warn("default storage: listing storages", "err", err)
		return
	}
	if len(page.Items) > 0 {
		return
	}
	dir := filepath.Join(dataDir, defaultStorageDir)
	gid := -1
	if id, ok := hostuser.DefaultQEMU(); ok {
		gid = id.GID
	}
	if err := hostuser.MkdirTraversable(dir, gid); err != nil {
		log.Warn("default storage", "err", err)
		return
	}
	st, err := sys.Storages.Create(ctx, storage.CreateRequest{Name: "default", Type: "localfs",
		Description: "created at first start", Config: localfs.Config{Path: dir}})
	if err != nil {
		log.Warn("default storage", "err", err)
		return
	}
	log.Info("default storage created", "id", st.ID, "path", dir)
}

// dsnScheme names a store for logs without its credentials.
func dsnScheme(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		s, _, _ := strings.Cut(dsn, ":")
		return s
	}
	if u.Host != "" {
		return u.Scheme + "://" + u.Host
	}
	return u.Scheme
}
