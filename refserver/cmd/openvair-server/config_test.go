package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/refserver"
)

var testHash = strings.Repeat("ab", 32)

// keyCase is one configuration key written in each source: tomlValue in the file, text in the environment
// and in a flag; want is the value the field must hold then.
type keyCase struct {
	key       string
	tomlValue string
	text      string
	want      any
}

// everyKey has a case for every key of config (TestConfigEveryKeyFromEverySource fails when a key is
// missing here), covering each type: string, bool, int, int64, duration, list, table, tokens.
var everyKey = []keyCase{
	{"listen", `"127.0.0.1:9999"`, "127.0.0.1:9999", "127.0.0.1:9999"},
	{"metrics_listen", `"127.0.0.1:9100"`, "127.0.0.1:9100", "127.0.0.1:9100"},
	{"data_dir", `"/srv/ov"`, "/srv/ov", "/srv/ov"},
	{"dsn", `"postgres://u:p@db/x"`, "postgres://u:p@db/x", "postgres://u:p@db/x"},
	{"hypervisor", `"none"`, "none", "none"},
	{"libvirt_uri", `"test:///default"`, "test:///default", "test:///default"},
	{"libvirt_socket", `"/run/x.sock"`, "/run/x.sock", "/run/x.sock"},
	{"libvirt_options", `{ console_log_dir = "/tmp/c", qemu_uid = "64055" }`, "console_log_dir=/tmp/c, qemu_uid=64055",
		map[string]string{"console_log_dir": "/tmp/c", "qemu_uid": "64055"}},
	{"domain_type", `"qemu"`, "qemu", "qemu"},
	{"cpu_mode", `"custom"`, "custom", "custom"},
	{"cpu_model", `"qemu64"`, "qemu64", "qemu64"},
	{"storage_options", `{ allowed_dirs = "/srv/a:/srv/b", file_mode = "0640" }`, "allowed_dirs=/srv/a:/srv/b,file_mode=0640",
		map[string]string{"allowed_dirs": "/srv/a:/srv/b", "file_mode": "0640"}},
	{"admin_token", `"s3cret"`, "s3cret", "s3cret"},
	{"tokens", `[{ name = "ci", role = "reader", sha256 = "` + testHash + `" }]`,
		`[{"name":"ci","role":"reader","sha256":"` + testHash + `"}]`,
		[]refserver.Token{{Name: "ci", Role: refserver.RoleReader, SHA256: testHash}}},
	{"default_storage", "false", "false", false},
	{"max_image_size", "1048576", "1048576", int64(1 << 20)},
	{"import_allow", `["10.0.0.0/8", "mirror.lan"]`, "10.0.0.0/8, mirror.lan", []string{"10.0.0.0/8", "mirror.lan"}},
	{"max_body_bytes", "2048", "2048", int64(2048)},
	{"request_timeout", `"90s"`, "90s", duration{90 * time.Second}},
	{"upload_timeout", `"2h"`, "2h", duration{2 * time.Hour}},
	{"shutdown_timeout", `"5s"`, "5s", duration{5 * time.Second}},
	{"monitor_interval", `"1s"`, "1s", duration{time.Second}},
	{"lease", `"3s"`, "3s", duration{3 * time.Second}},
	{"workers", "4", "4", 4},
	{"event_retention", `"1h"`, "1h", duration{time.Hour}},
	{"operation_retention", `"2h"`, "2h", duration{2 * time.Hour}},
	{"event_heartbeat", `"3s"`, "3s", duration{3 * time.Second}},
	{"idempotency_ttl", `"1h30m"`, "1h30m", duration{90 * time.Minute}},
	{"log_level", `"debug"`, "debug", "debug"},
	{"log_format", `"json"`, "json", "json"},
	{"tracing", `"otlp"`, "otlp", "otlp"},
	{"otlp_endpoint", `"http://127.0.0.1:4318"`, "http://127.0.0.1:4318", "http://127.0.0.1:4318"},
}

// field returns the declaration of key.
func field(t *testing.T, key string) *configField {
	t.Helper()
	for i := range configFields {
		if configFields[i].key == key {
			return &configFields[i]
		}
	}
	t.Fatalf("no key %s", key)
	return nil
}

// load runs loadConfig with args and env (nothing else in the environment).
func load(args []string, env map[string]string) (config, options, error) {
	return loadConfig(args, func(k string) string { return env[k] }, io.Discard)
}

// writeFile writes a TOML file into a test directory and returns its path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "openvair.toml")
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

// TestConfigEveryKeyFromEverySource sets each key from the file, the environment and a flag, alone, and
// checks the names the declaration derives (OPENVAIR_DATA_DIR, -data-dir).
func TestConfigEveryKeyFromEverySource(t *testing.T) {
	var keys, covered []string
	for _, f := range configFields {
		keys = append(keys, f.key)
		assert.Equal(t, "OPENVAIR_"+strings.ToUpper(f.key), f.env)
		assert.Equal(t, strings.ReplaceAll(f.key, "_", "-"), f.flag)
	}
	for _, c := range everyKey {
		covered = append(covered, c.key)
	}
	require.ElementsMatch(t, keys, covered, "every key of config has a case in everyKey")

	for _, c := range everyKey {
		f := field(t, c.key)
		sources := map[string]struct {
			args []string
			env  map[string]string
		}{
			"file": {args: []string{"-config", writeFile(t, c.key+" = "+c.tomlValue+"\n")}},
			"env":  {env: map[string]string{f.env: c.text}},
			"flag": {args: []string{"-" + f.flag + "=" + c.text}},
		}
		for name, src := range sources {
			t.Run(c.key+"/"+name, func(t *testing.T) {
				cfg, _, err := load(src.args, src.env)
				require.NoError(t, err)
				assert.Equal(t, c.want, f.value(&cfg).Interface())
				def := defaults(func(string) string { return "" })
				assert.NotEqual(t, f.value(&def).Interface(), c.want, "the case changes the default")
			})
		}
	}
}

// TestConfigPrecedence: defaults < file < environment < flags, for a key of each type.
func TestConfigPrecedence(t *testing.T) {
	cases := []struct {
		key                      string
		file, env, flag          string // TOML value, environment text, flag text
		wantFile, wantEnv, wantF any
	}{
		{"listen", `"127.0.0.1:1"`, "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"},
		{"default_storage", "false", "true", "false", false, true, false},
		{"workers", "1", "2", "3", 1, 2, 3},
		{"max_body_bytes", "1", "2", "3", int64(1), int64(2), int64(3)},
		{"lease", `"1s"`, "2s", "3s", duration{time.Second}, duration{2 * time.Second}, duration{3 * time.Second}},
		{"import_allow", `["a.lan"]`, "b.lan,c.lan", "d.lan", []string{"a.lan"}, []string{"b.lan", "c.lan"}, []string{"d.lan"}},
		{"storage_options", `{ file_mode = "0600" }`, "file_mode=0640", "allowed_dirs=/srv",
			map[string]string{"file_mode": "0600"}, map[string]string{"file_mode": "0640"}, map[string]string{"allowed_dirs": "/srv"}},
		{"tokens", `[{ name = "f", role = "reader", sha256 = "` + testHash + `" }]`,
			`[{"name":"e","role":"admin","sha256":"` + testHash + `"}]`, `[]`,
			[]refserver.Token{{Name: "f", Role: refserver.RoleReader, SHA256: testHash}},
			[]refserver.Token{{Name: "e", Role: refserver.RoleAdmin, SHA256: testHash}}, []refserver.Token{}},
	}
	for _, c := range cases {
		t.Run(c.key, func(t *testing.T) {
			f := field(t, c.key)
			file := writeFile(t, c.key+" = "+c.file+"\n")
			env := map[string]string{f.env: c.env}
			flagArg := "-" + f.flag + "=" + c.flag

			cfg, _, err := load(nil, nil)
			require.NoError(t, err)
			def := defaults(func(string) string { return "" })
			assert.Equal(t, f.value(&def).Interface(), f.value(&cfg).Interface(), "defaults")

			cfg, _, err = load([]string{"-config", file}, nil)
			require.NoError(t, err)
			assert.Equal(t, c.wantFile, f.value(&cfg).Interface(), "the file beats the defaults")

			cfg, _, err = load([]string{"-config", file}, env)
			require.NoError(t, err)
			assert.Equal(t, c.wantEnv, f.value(&cfg).Interface(), "the environment beats the file")

			// Flags apply last wherever they stand, even before -config.
			cfg, _, err = load([]string{flagArg, "-config", file}, env)
			require.NoError(t, err)
			assert.Equal(t, c.wantF, f.value(&cfg).Interface(), "a flag beats the environment")

			cfg, _, err = load([]string{"-config", file, flagArg}, nil)
			require.NoError(t, err)
			assert.Equal(t, c.wantF, f.value(&cfg).Interface(), "a flag beats the file")
		})
	}

	t.Run("config file from OPENVAIR_CONFIG, -config wins", func(t *testing.T) {
		a, b := writeFile(t, `listen = "127.0.0.1:1"`), writeFile(t, `listen = "127.0.0.1:2"`)
		cfg, opt, err := load(nil, map[string]string{"OPENVAIR_CONFIG": a})
		require.NoError(t, err)
		assert.Equal(t, "127.0.0.1:1", cfg.Listen)
		assert.Equal(t, a, opt.configPath)
		cfg, _, err = load([]string{"-config", b}, map[string]string{"OPENVAIR_CONFIG": a})
		require.NoError(t, err)
		assert.Equal(t, "127.0.0.1:2", cfg.Listen)
	})
	t.Run("a bool flag alone is true", func(t *testing.T) {
		cfg, _, err := load([]string{"-default-storage"}, map[string]string{"OPENVAIR_DEFAULT_STORAGE": "false"})
		require.NoError(t, err)
		assert.True(t, cfg.DefaultStorage)
	})
	t.Run("an empty variable is unset", func(t *testing.T) {
		cfg, _, err := load(nil, map[string]string{"OPENVAIR_LISTEN": ""})
		require.NoError(t, err)
		assert.Equal(t, "127.0.0.1:8080", cfg.Listen)
	})
	t.Run("the last of a repeated flag wins", func(t *testing.T) {
		cfg, _, err := load([]string{"-workers", "2", "-workers", "5"}, nil)
		require.NoError(t, err)
		assert.Equal(t, 5, cfg.Workers)
	})
	t.Run("derived values", func(t *testing.T) {
		cfg, _, err := load([]string{"-data-dir", "rel", "-libvirt-uri", "none"}, nil)
		require.NoError(t, err)
		wd, err := os.Getwd()
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(wd, "rel"), cfg.DataDir, "absolute")
		assert.Equal(t, "sqlite://"+filepath.Join(wd, "rel", "openvair.db"), cfg.DSN, "SQLite in the data directory")
		assert.Equal(t, "none", cfg.Hypervisor, "libvirt_uri none means no hypervisor")
	})
	t.Run("options that are not keys", func(t *testing.T) {
		_, opt, err := load([]string{"-add-token", "reader", "-token-name", "ci", "-print-config"}, nil)
		require.NoError(t, err)
		assert.Equal(t, options{addToken: "reader", tokenName: "ci", printConfig: true}, opt)
	})
}

// TestConfigErrors: a value that cannot be used is an error naming the variable, the flag or the file and
// key it came from.
func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		env    map[string]string
		file   string // when set, a TOML file given with -config
		source string // the sourceError's Source; "" when the error is not one
		want   string // in the message
	}{
		{"bool env", nil, map[string]string{"OPENVAIR_DEFAULT_STORAGE": "maybe"}, "", "OPENVAIR_DEFAULT_STORAGE", `want true or false, got "maybe"`},
		{"bool flag", []string{"-default-storage=maybe"}, nil, "", "-default-storage", `want true or false, got "maybe"`},
		{"int env", nil, map[string]string{"OPENVAIR_WORKERS": "4x"}, "", "OPENVAIR_WORKERS", `want an integer, got "4x"`},
		{"int64 flag", []string{"-max-image-size", "1G"}, nil, "", "-max-image-size", `want an integer, got "1G"`},
		{"duration env", nil, map[string]string{"OPENVAIR_UPLOAD_TIMEOUT": "soon"}, "", "OPENVAIR_UPLOAD_TIMEOUT", `want a duration such as 30s, got "soon"`},
		{"duration flag", []string{"-request-timeout", "5"}, nil, "", "-request-timeout", `want a duration such as 30s, got "5"`},
		{"map env", nil, map[string]string{"OPENVAIR_LIBVIRT_OPTIONS": "a=1,b"}, "", "OPENVAIR_LIBVIRT_OPTIONS", "want key=value pairs"},
		{"map flag", []string{"-storage-options", "=x"}, nil, "", "-storage-options", "want key=value pairs"},
		{"json env", nil, map[string]string{"OPENVAIR_TOKENS": "[{"}, "", "OPENVAIR_TOKENS", "want a JSON array"},
		{"json unknown field", []string{"-tokens", `[{"name":"x","rol":"reader"}]`}, nil, "", "-tokens", "unknown field"},
		{"json two values", []string{"-tokens", `[] []`}, nil, "", "-tokens", "single JSON value"},
		{"lease env", nil, map[string]string{"OPENVAIR_LEASE": "-1s"}, "", "OPENVAIR_LEASE", "want a positive duration such as 30s"},
		{"lease env zero", nil, map[string]string{"OPENVAIR_LEASE": "0s"}, "", "OPENVAIR_LEASE", "want a positive duration"},
		{"lease flag", []string{"-lease=0"}, nil, "", "-lease", "want a positive duration"},
		{"lease file", nil, nil, `lease = "-5s"`, "lease", "want a positive duration"},
		{"tracing env", nil, map[string]string{"OPENVAIR_TRACING": "jaeger"}, "", "OPENVAIR_TRACING", `want otlp, stdout or nothing, got "jaeger"`},
		{"tracing flag", []string{"-tracing", "zipkin"}, nil, "", "-tracing", "want otlp, stdout or nothing"},
		{"tracing file", nil, nil, `tracing = "OTLP"`, "tracing", "want otlp, stdout or nothing"},
		{"hypervisor", nil, map[string]string{"OPENVAIR_HYPERVISOR": "xen"}, "", "OPENVAIR_HYPERVISOR", "want libvirt, none or nothing"},
		{"unknown file key", nil, nil, `lisen = "x"`, "", "unknown keys [lisen]"},
		{"file type", nil, nil, `workers = "four"`, "", "workers"},
		{"file duration", nil, nil, `lease = "soon"`, "", `want a duration such as 30s, got "soon"`},
		{"file syntax", nil, nil, `listen = `, "", "config "},
		{"missing file", []string{"-config", "/nonexistent/openvair.toml"}, nil, "", "", "no such file"},
		{"unknown flag", []string{"-lisen", "x"}, nil, "", "", "flag provided but not defined: -lisen"},
		{"arguments", []string{"serve"}, nil, "", "", "unexpected arguments"},
		{"empty data dir", []string{"-data-dir="}, nil, "", "", "data directory is empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := c.args
			if c.file != "" {
				args = append([]string{"-config", writeFile(t, c.file)}, args...)
			}
			_, _, err := load(args, c.env)
			require.Error(t, err)
			assert.ErrorContains(t, err, c.want)
			var se *sourceError
			if c.source == "" {
				return
			}
			require.ErrorAs(t, err, &se)
			if c.file != "" {
				assert.True(t, strings.HasPrefix(se.Source, "config ") && strings.HasSuffix(se.Source, ": "+c.source), se.Source)
			} else {
				assert.Equal(t, c.source, se.Source)
			}
			assert.True(t, strings.HasPrefix(err.Error(), se.Source+": "), "the message starts with the source: %v", err)
		})
	}
}

// TestPrintConfig: -print-config prints the effective configuration as TOML with every key, secrets
// redacted, exits without error and touches nothing; what it prints reads back to the same configuration.
func TestPrintConfig(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	file := writeFile(t, `
admin_token = "admin-secret-1"
[[tokens]]
name = "ci"
role = "reader"
sha256 = "`+strings.Repeat("cd", 32)+`"
`)
	cases := []struct {
		name    string
		dsn     string
		secrets []string // must not appear
		want    []string // must appear
	}{
		{"url password", "postgres://ov:pg-secret-2@db:5432/openvair?sslmode=disable", []string{"pg-secret-2"},
			[]string{`dsn = "postgres://ov:REDACTED@db:5432/openvair?sslmode=disable"`}},
		{"password parameter", "postgres://db/openvair?password=pg-secret-3&sslmode=disable", []string{"pg-secret-3"},
			[]string{"password=REDACTED", "sslmode=disable"}},
		{"key=value DSN", "host=db password=pg-secret-4 dbname=openvair", []string{"pg-secret-4"},
			[]string{`dsn = "host=db password=REDACTED dbname=openvair"`}},
		{"no password", "postgres://ov@db/openvair", nil, []string{`dsn = "postgres://ov@db/openvair"`}},
		{"URL net/url refuses", "postgres://ov:pg%zz-secret-5@db/openvair", []string{"secret-5"},
			[]string{`dsn = "postgres://ov:REDACTED@db/openvair"`}},
		{"SQLite", "sqlite:///var/lib/openvair/openvair.db", nil, []string{`dsn = "sqlite:///var/lib/openvair/openvair.db"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			env := map[string]string{"OPENVAIR_DSN": c.dsn, "OPENVAIR_STORAGE_OPTIONS": "allowed_dirs=/srv"}
			err := run(context.Background(), []string{"-config", file, "-print-config", "-data-dir", dataDir, "-workers", "3"},
				func(k string) string { return env[k] }, &out, &errOut, nil)
			require.NoError(t, err, errOut.String())
			s := out.String()
			for _, secret := range append(c.secrets, "admin-secret-1", strings.Repeat("cd", 32)) {
				assert.NotContains(t, s, secret)
			}
			for _, w := range append(c.want, `admin_token = "REDACTED"`, `sha256 = "REDACTED"`, `name = "ci"`,
				"workers = 3", `allowed_dirs = "/srv"`, `data_dir = "`+dataDir+`"`) {
				assert.Contains(t, s, w)
			}
			var m map[string]any
			_, err = toml.Decode(s, &m)
			require.NoError(t, err, "valid TOML")
			assert.Len(t, m, len(configFields))
			for _, f := range configFields {
				assert.Contains(t, m, f.key, "every key is printed")
				assert.Contains(t, s, "("+f.env+", -"+f.flag+")\n", "with its help")
			}
			assert.NoDirExists(t, dataDir, "printing creates nothing")
		})
	}

	t.Run("reads back", func(t *testing.T) {
		cfg, _, err := load([]string{"-data-dir", dataDir, "-libvirt-options", "console_log_dir=/tmp/c", "-import-allow", "a.lan,10.0.0.0/8",
			"-lease", "7s", "-default-storage=false", "-tracing", "stdout"}, nil)
		require.NoError(t, err)
		var first bytes.Buffer
		require.NoError(t, writeTOML(&first, cfg))
		again, _, err := load([]string{"-config", writeFile(t, first.String())}, nil)
		require.NoError(t, err)
		var second bytes.Buffer
		require.NoError(t, writeTOML(&second, again))
		assert.Equal(t, first.String(), second.String())
		assert.Equal(t, cfg.LibvirtOptions, again.LibvirtOptions)
		assert.Equal(t, cfg.ImportAllow, again.ImportAllow)
		assert.Equal(t, cfg.Lease, again.Lease)
		assert.False(t, again.DefaultStorage)
	})

	t.Run("redaction copies", func(t *testing.T) {
		cfg := config{AdminToken: "x", DSN: "postgres://u:p@h/d", Tokens: []refserver.Token{{Name: "a", SHA256: testHash}}}
		red := redacted(cfg)
		assert.Equal(t, "REDACTED", red.AdminToken)
		assert.Equal(t, "REDACTED", red.Tokens[0].SHA256)
		assert.Equal(t, "postgres://u:REDACTED@h/d", red.DSN)
		assert.Equal(t, testHash, cfg.Tokens[0].SHA256, "the configuration itself is untouched")
		assert.Empty(t, redacted(config{}).AdminToken, "an empty secret stays empty")
	})
}

// TestHelp: -help lists every key with its flag, environment variable and default, and is no error.
func TestHelp(t *testing.T) {
	var errOut bytes.Buffer
	err := run(context.Background(), []string{"-help"}, func(string) string { return "" }, io.Discard, &errOut, nil)
	require.NoError(t, err)
	s := errOut.String()
	for _, f := range configFields {
		assert.Contains(t, s, "  -"+f.flag+" ")
		assert.Contains(t, s, "("+f.env+", TOML "+f.key+")")
	}
	for _, w := range []string{`(default "127.0.0.1:8080")`, `(default true)`, `(default "30s")`, "-print-config", "-add-token role",
		"OPENVAIR_CONFIG"} {
		assert.Contains(t, s, w)
	}
	_, _, err = load([]string{"-h"}, nil)
	assert.True(t, errors.Is(err, flag.ErrHelp))
}

// TestPackagedConfig: the configuration the Debian package installs (packaging/server.toml) is read by this
// declaration without error and sets what the package promises.
func TestPackagedConfig(t *testing.T) {
	cfg, _, err := load([]string{"-config", filepath.Join("..", "..", "..", "packaging", "server.toml")}, nil)
	require.NoError(t, err)
	assert.Equal(t, "/var/lib/openvair", cfg.DataDir)
	assert.Equal(t, "127.0.0.1:8080", cfg.Listen)
	assert.Equal(t, "qemu:///system", cfg.LibvirtURI)
	assert.Equal(t, "sqlite:///var/lib/openvair/openvair.db", cfg.DSN)
}
