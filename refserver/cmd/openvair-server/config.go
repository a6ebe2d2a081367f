package main

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/openvair/openvair/image"
	"github.com/openvair/openvair/internal/hostuser"
	"github.com/openvair/openvair/internal/operation"
	"github.com/openvair/openvair/internal/secret"
	"github.com/openvair/openvair/refserver"
)

// config is the server's configuration, declared once. Sources, later ones winning: the embedded defaults
// (func defaults), the TOML file (-config or OPENVAIR_CONFIG), environment variables, command-line flags.
//
// Every field is a key, and everything about the key comes from the field's tags (see configFields):
//
//   - toml: the key in the TOML file, such as "data_dir". Its environment variable is OPENVAIR_ and the key
//     in upper case (OPENVAIR_DATA_DIR), its flag is the key with dashes (-data-dir).
//   - help: the line -help shows.
//   - secret: how -print-config redacts the value: "true" the whole value (each element of a list, each
//     value of a table), "url" the password of a URL such as a DSN (postgres://user:REDACTED@host/db), or
//     the names of the sub-keys to redact in each element of an array of tables ("sha256").
//   - check: "positive": once set from any source, the value must be above zero; "oneof=a|b": a non-empty
//     value must be one of these.
//
// Types: string, bool, int, int64, duration ("30s"), []string (comma-separated in the environment and in
// flags), map[string]string ("k=v,k=v" in the environment and in flags), and anything else as JSON in the
// environment and in flags (the tokens). An empty environment variable counts as unset.
type config struct {
	Listen         string            `toml:"listen" help:"address to listen on (host:port; port 0 picks a free port)"`
	MetricsListen  string            `toml:"metrics_listen" help:"address of a second listener that serves only GET /metrics without a token; empty: /metrics needs a token on the main listener"`
	DataDir        string            `toml:"data_dir" help:"data directory: database, admin token, secret key, default storage"`
	DSN            string            `toml:"dsn" secret:"url" help:"store DSN: sqlite:///path/file.db, postgres://user:pass@host/db, memory:; empty: SQLite in the data directory"`
	Hypervisor     string            `toml:"hypervisor" check:"oneof=libvirt|none" help:"libvirt or none (libvirt_uri none implies none)"`
	LibvirtURI     string            `toml:"libvirt_uri" help:"libvirt URI, or none for no hypervisor"`
	LibvirtSocket  string            `toml:"libvirt_socket" help:"libvirtd unix socket; empty: the URI's usual socket"`
	LibvirtOptions map[string]string `toml:"libvirt_options" help:"other libvirt driver options (console_log_dir, qemu_uid, ...)"`
	DomainType     string            `toml:"domain_type" help:"domain type of new VMs: kvm, or qemu (TCG); empty: kvm when the host offers it"`
	CPUMode        string            `toml:"cpu_mode" help:"default CPU mode of new VMs: host-model (when empty), host-passthrough or custom"`
	CPUModel       string            `toml:"cpu_model" help:"CPU model for cpu_mode custom (e.g. qemu64)"`
	StorageOptions map[string]string `toml:"storage_options" help:"options of the storage drivers (allowed_dirs, file_mode, ...)"`
	AdminToken     string            `toml:"admin_token" secret:"true" help:"bearer token of the first administrator; empty: read from, or generated into, <data_dir>/admin.token (prefer the file or the environment to the flag, which ps shows)"`
	Tokens         []refserver.Token `toml:"tokens" secret:"sha256" help:"more tokens, each a name, a role (admin or reader) and the SHA-256 of the token in hex"`
	DefaultStorage bool              `toml:"default_storage" help:"create a LocalFS storage \"default\" in <data_dir>/storage when there is none"`
	MaxImageSize   int64             `toml:"max_image_size" help:"largest image upload or import in bytes (64 GiB by default)"`
	// ImportAllow opens image imports from URLs to addresses the SSRF guard refuses by default (loopback,
	// private, link-local, ...): CIDR ranges ("10.20.0.0/16"), addresses, or host names of private mirrors.
	ImportAllow     []string `toml:"import_allow" help:"CIDR ranges, addresses or host names that image imports may reach although private or loopback"`
	MaxBodyBytes    int64    `toml:"max_body_bytes" help:"largest JSON request body in bytes; 0: 1 MiB"`
	RequestTimeout  duration `toml:"request_timeout" help:"read and write deadline of an ordinary request"`
	UploadTimeout   duration `toml:"upload_timeout" help:"read and write deadline of an image upload"`
	ShutdownTimeout duration `toml:"shutdown_timeout" help:"how long a graceful shutdown waits for requests in flight"`
	MonitorInterval duration `toml:"monitor_interval" help:"how often storages, volumes and images are refreshed"`
	// Operations and events (several processes may share one PostgreSQL store).
	Lease              duration `toml:"lease" check:"positive" help:"how long a process's claim on its operations and on the monitors lasts without renewal"`
	Workers            int      `toml:"workers" help:"asynchronous operations this process runs at once; 0: 10"`
	EventRetention     duration `toml:"event_retention" help:"how long events are kept; 0: 168h"`
	OperationRetention duration `toml:"operation_retention" help:"how long finished operations are kept; 0: 168h"`
	EventHeartbeat     duration `toml:"event_heartbeat" help:"comment lines on event streams idle this long; 0: 15s"`
	IdempotencyTTL     duration `toml:"idempotency_ttl" help:"how long Idempotency-Key outcomes are kept; 0: 24h"`
	LogLevel           string   `toml:"log_level" help:"debug, info, warn or error"`
	LogFormat          string   `toml:"log_format" help:"text or json"`
	// Observability (served by package refserver).
	Tracing      string `toml:"tracing" check:"oneof=otlp|stdout" help:"traces: empty (none), otlp or stdout"`
	OTLPEndpoint string `toml:"otlp_endpoint" help:"OTLP/HTTP endpoint such as http://127.0.0.1:4318; empty: the standard OTEL_EXPORTER_OTLP_* environment"`
}

// envPrefix starts the name of every configuration environment variable.
const envPrefix = "OPENVAIR_"

// duration is a time.Duration written as "30s" in TOML, in the environment and in flags.
type duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("want a duration such as 30s, got %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

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
		DefaultStorage:  true,
		MaxImageSize:    image.DefaultMaxSize,
		Lease:           duration{operation.DefaultLease},
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
	configPath  string // the TOML file, if any
	addToken    string // role of a token to add, then exit
	tokenName   string
	printConfig bool // print the effective configuration, then exit
}

// sourceError is a configuration value that cannot be used. Source names where it came from: an
// environment variable ("OPENVAIR_LEASE"), a flag ("-lease") or a key of a file ("config f.toml: lease").
type sourceError struct {
	Source string
	Err    error
}

func (e *sourceError) Error() string { return e.Source + ": " + e.Err.Error() }
func (e *sourceError) Unwrap() error { return e.Err }

// configField is one key of the configuration, as its struct field's tags declare it.
type configField struct {
	key    string // TOML key, data_dir
	env    string // OPENVAIR_DATA_DIR
	flag   string // data-dir
	help   string
	secret string // the secret tag
	check  string // the check tag
	index  int    // in config
	typ    reflect.Type
}

// configFields are the keys of config, in declaration order.
var configFields = declaredFields()

// declaredFields reads the tags of config. A field without a key or help, of a type no source can set, or
// with a name taken twice is a programming error: it panics (at start, and in the tests).
func declaredFields() []configField {
	t := reflect.TypeFor[config]()
	seen := map[string]bool{"config": true, "add-token": true, "token-name": true, "print-config": true, "help": true, "h": true}
	var out []configField
	for i := range t.NumField() {
		sf := t.Field(i)
		f := configField{key: sf.Tag.Get("toml"), help: sf.Tag.Get("help"), secret: sf.Tag.Get("secret"),
			check: sf.Tag.Get("check"), index: i, typ: sf.Type}
		if f.key == "" || f.help == "" {
			panic(fmt.Sprintf("config.%s: a key needs toml and help tags", sf.Name))
		}
		f.env = envPrefix + strings.ToUpper(f.key)
		f.flag = strings.ReplaceAll(f.key, "_", "-")
		if seen[f.flag] {
			panic(fmt.Sprintf("config.%s: flag -%s is taken", sf.Name, f.flag))
		}
		seen[f.flag] = true
		kind := kindName(f.typ)
		switch {
		case kind == "":
			panic(fmt.Sprintf("config.%s: type %s is not supported", sf.Name, f.typ))
		case f.check == "positive" && kind != "duration" && kind != "int",
			strings.HasPrefix(f.check, "oneof=") && kind != "string",
			f.check != "" && f.check != "positive" && !strings.HasPrefix(f.check, "oneof="):
			panic(fmt.Sprintf("config.%s: check %q does not apply to a %s", sf.Name, f.check, kind))
		case f.secret == "url" && kind != "string",
			f.secret != "" && f.secret != "true" && f.secret != "url" && kind != "json":
			panic(fmt.Sprintf("config.%s: secret %q does not apply to a %s", sf.Name, f.secret, kind))
		}
		out = append(out, f)
	}
	return out
}

var (
	durationType = reflect.TypeFor[duration]()
	unmarshaler  = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// kindName names how a value of type t is written in the environment and in flags; "" if unsupported.
func kindName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case reflect.PointerTo(t).Implements(unmarshaler):
		return "value"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int64:
		return "int"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "list"
		}
		if t.Elem().Kind() == reflect.Struct {
			return "json"
		}
	case reflect.Map:
		if t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.String {
			return "map"
		}
	}
	return ""
}

// value returns the field's value in cfg.
func (f *configField) value(cfg *config) reflect.Value {
	return reflect.ValueOf(cfg).Elem().Field(f.index)
}

// set parses s, the text of an environment variable or a flag, into the field of cfg and checks it.
func (f *configField) set(cfg *config, s string) error {
	v := f.value(cfg)
	if err := parseText(v, s); err != nil {
		return err
	}
	return f.validate(v)
}

// parseText sets v from its environment or flag form.
func parseText(v reflect.Value, s string) error {
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(s))
	}
	switch kindName(v.Type()) {
	case "string":
		v.SetString(s)
	case "bool":
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		v.SetBool(b)
	case "int":
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want an integer, got %q", s)
		}
		v.SetInt(n)
	case "list":
		list := reflect.MakeSlice(v.Type(), 0, 0)
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = reflect.Append(list, reflect.ValueOf(item).Convert(v.Type().Elem()))
			}
		}
		v.Set(list)
	case "map":
		m := reflect.MakeMap(v.Type())
		for item := range strings.SplitSeq(s, ",") {
			if strings.TrimSpace(item) == "" {
				continue
			}
			k, val, ok := strings.Cut(item, "=")
			if k = strings.TrimSpace(k); !ok || k == "" {
				return fmt.Errorf("want key=value pairs separated by commas, got %q", s)
			}
			m.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), reflect.ValueOf(strings.TrimSpace(val)).Convert(v.Type().Elem()))
		}
		v.Set(m)
	case "json":
		p := reflect.New(v.Type())
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(p.Interface()); err != nil {
			return fmt.Errorf("want a JSON array such as %s: %w", jsonExample(v.Type()), err)
		}
		if dec.More() {
			return errors.New("want a single JSON value")
		}
		v.Set(p.Elem())
	}
	return nil
}

// jsonExample shows the JSON form of a value of type t (an array of objects).
func jsonExample(t reflect.Type) string {
	if t == reflect.TypeFor[[]refserver.Token]() {
		return `[{"name":"ci","role":"reader","sha256":"<64 hex digits>"}]`
	}
	return "[{...}]"
}

// validate applies the field's check tag to v.
func (f *configField) validate(v reflect.Value) error {
	switch {
	case f.check == "":
	case f.check == "positive":
		if v.Type() == durationType {
			if d := v.Interface().(duration); d.Duration <= 0 {
				return fmt.Errorf("want a positive duration such as 30s, got %q", d.String())
			}
		} else if v.Int() <= 0 {
			return fmt.Errorf("want a positive integer, got %d", v.Int())
		}
	case strings.HasPrefix(f.check, "oneof="):
		allowed := strings.Split(strings.TrimPrefix(f.check, "oneof="), "|")
		if s := v.String(); s != "" && !slices.Contains(allowed, s) {
			return fmt.Errorf("want %s or nothing, got %q", strings.Join(allowed, ", "), s)
		}
	}
	return nil
}

// text renders v in its environment and flag form (the form -help shows defaults in).
func text(v reflect.Value) string {
	switch kindName(v.Type()) {
	case "list":
		var items []string
		for i := range v.Len() {
			items = append(items, v.Index(i).String())
		}
		return strings.Join(items, ",")
	case "map":
		var items []string
		for _, k := range v.MapKeys() {
			items = append(items, k.String()+"="+v.MapIndex(k).String())
		}
		slices.Sort(items)
		return strings.Join(items, ",")
	case "json":
		if v.Len() == 0 {
			return "[]"
		}
		b, _ := json.Marshal(v.Interface())
		return string(b)
	}
	if m, ok := v.Interface().(encoding.TextMarshaler); ok {
		b, _ := m.MarshalText()
		return string(b)
	}
	return fmt.Sprint(v.Interface())
}

// flagValue holds the text a configuration flag was given; flags are applied after the file and the
// environment, whatever their place on the command line.
type flagValue struct {
	field *configField
	text  string
	isSet bool
}

func (v *flagValue) String() string {
	if v == nil {
		return ""
	}
	return v.text
}

func (v *flagValue) Set(s string) error {
	v.text, v.isSet = s, true
	return nil
}

// IsBoolFlag lets a bool key be given as -key alone (true).
func (v *flagValue) IsBoolFlag() bool {
	return v != nil && v.field != nil && kindName(v.field.typ) == "bool"
}

// loadConfig merges the defaults, the TOML file, the environment and the flags.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (config, options, error) {
	cfg := defaults(getenv)
	var opt options
	fs := flag.NewFlagSet("openvair-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&opt.configPath, "config", getenv(envPrefix+"CONFIG"), "TOML configuration `file` (env "+envPrefix+"CONFIG)")
	fs.BoolVar(&opt.printConfig, "print-config", false, "print the effective configuration as TOML, secrets redacted, and exit")
	fs.StringVar(&opt.addToken, "add-token", "", "add a token with this `role` (admin or reader) to <data-dir>/tokens.json, print it once and exit")
	fs.StringVar(&opt.tokenName, "token-name", "", "`name` of the token -add-token adds (default: <role>-<date>)")
	flags := make([]*flagValue, len(configFields))
	for i := range configFields {
		flags[i] = &flagValue{field: &configFields[i]}
		fs.Var(flags[i], configFields[i].flag, configFields[i].help)
	}
	fs.Usage = func() { usage(fs, defaults(getenv)) }
	if err := fs.Parse(args); err != nil {
		return cfg, opt, err
	}
	if fs.NArg() > 0 {
		return cfg, opt, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if opt.configPath != "" {
		if err := decodeFile(opt.configPath, &cfg); err != nil {
			return cfg, opt, err
		}
	}
	for i := range configFields {
		f := &configFields[i]
		if s := getenv(f.env); s != "" {
			if err := f.set(&cfg, s); err != nil {
				return cfg, opt, &sourceError{Source: f.env, Err: err}
			}
		}
	}
	for _, fv := range flags {
		if fv.isSet {
			if err := fv.field.set(&cfg, fv.text); err != nil {
				return cfg, opt, &sourceError{Source: "-" + fv.field.flag, Err: err}
			}
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

// decodeFile reads the TOML file at path over cfg. Unknown keys are an error, and so is a value its key's
// check refuses.
func decodeFile(path string, cfg *config) error {
	md, err := toml.DecodeFile(path, cfg)
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return fmt.Errorf("config %s: unknown keys %v", path, und)
	}
	for i := range configFields {
		f := &configFields[i]
		if md.IsDefined(f.key) {
			if err := f.validate(f.value(cfg)); err != nil {
				return &sourceError{Source: "config " + path + ": " + f.key, Err: err}
			}
		}
	}
	return nil
}

// usage writes -help: the flags that are not configuration keys, then every key with its flag,
// environment variable, TOML key and default.
func usage(fs *flag.FlagSet, def config) {
	w := fs.Output()
	fmt.Fprintf(w, `Usage: openvair-server [flags]

Serves the openvair API. Configuration, later sources winning: embedded defaults, the TOML file (-config),
%s<KEY> environment variables, flags. In the environment and in flags, lists are comma-separated
("a,b"), tables are "k=v,k=v" and tokens are JSON; durations read "30s", "5m", "6h".

Flags that are not configuration keys:
`, envPrefix)
	for _, name := range []string{"config", "print-config", "add-token", "token-name"} {
		f := fs.Lookup(name)
		arg, help := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  %s\n    \t%s\n", strings.TrimSpace("-"+name+" "+arg), help)
	}
	fmt.Fprintf(w, "\nConfiguration keys (flag, environment variable, TOML key):\n")
	for i := range configFields {
		f := &configFields[i]
		d := text(f.value(&def))
		if kindName(f.typ) != "int" && kindName(f.typ) != "bool" {
			d = strconv.Quote(d)
		}
		if f.secret == "true" && d != `""` {
			d = "(secret)"
		}
		fmt.Fprintf(w, "  -%s %s  (%s, TOML %s)\n    \t%s (default %s)\n", f.flag, kindName(f.typ), f.env, f.key, f.help, d)
	}
}

// redactedText replaces a secret in -print-config.
const redactedText = "REDACTED"

// redacted returns a copy of cfg with the values its secret tags name replaced by REDACTED; cfg is not
// changed.
func redacted(cfg config) config {
	out := cfg
	for i := range configFields {
		f := &configFields[i]
		if f.secret == "" {
			continue
		}
		v := f.value(&out)
		switch {
		case f.secret == "true":
			redactAll(v)
		case f.secret == "url":
			v.SetString(redactURL(v.String()))
		default:
			redactKeys(v, strings.Split(f.secret, ","))
		}
	}
	return out
}

// redactAll replaces every non-empty string of v (a string, a list, the values of a table), in a copy of
// any list or table.
func redactAll(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		if v.String() != "" {
			v.SetString(redactedText)
		}
	case reflect.Slice:
		c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		reflect.Copy(c, v)
		for i := range c.Len() {
			redactAll(c.Index(i))
		}
		v.Set(c)
	case reflect.Map:
		if v.IsNil() {
			return
		}
		c := reflect.MakeMap(v.Type())
		for _, k := range v.MapKeys() {
			c.SetMapIndex(k, reflect.ValueOf(redactedText).Convert(v.Type().Elem()))
		}
		v.Set(c)
	}
}

// redactKeys replaces the sub-keys named in each element of v, an array of tables, in a copy.
func redactKeys(v reflect.Value, keys []string) {
	if v.Kind() != reflect.Slice || v.Type().Elem().Kind() != reflect.Struct {
		panic("config: a secret tag naming sub-keys needs an array of tables, not " + v.Type().String())
	}
	c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
	reflect.Copy(c, v)
	et := v.Type().Elem()
	for i := range c.Len() {
		for j := range et.NumField() {
			name, _, _ := strings.Cut(et.Field(j).Tag.Get("toml"), ",")
			if slices.Contains(keys, name) {
				redactAll(c.Index(i).Field(j))
			}
		}
	}
	v.Set(c)
}

var (
	// dsnPassword finds passwords in the key=value form of a DSN ("host=db password=x").
	dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('[^']*'|[^\s&]+)`)
	// urlPassword finds the password of a URL that net/url refuses ("postgres://u:bad%zz@host").
	urlPassword = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*:)[^/]*@`)
)

// redactURL replaces the password of a URL (user:pass@host, or a password parameter) with REDACTED.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		s = urlPassword.ReplaceAllString(s, "${1}"+redactedText+"@")
		return dsnPassword.ReplaceAllString(s, "${1}"+redactedText)
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), redactedText)
	}
	if q := u.Query(); u.RawQuery != "" {
		changed := false
		for k := range q {
			if strings.Contains(strings.ToLower(k), "password") {
				q.Set(k, redactedText)
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	return u.String()
}

// writeTOML writes cfg as a TOML file, its secrets redacted: each key with its help as a comment, the
// tables last, as TOML wants. The output, read back with -config, gives the same configuration (secrets
// aside).
func writeTOML(w io.Writer, cfg config) error {
	red := redacted(cfg)
	var plain, tables bytes.Buffer
	plain.WriteString("# openvair-server: effective configuration (secrets redacted)\n")
	for i := range configFields {
		f := &configFields[i]
		v := f.value(&red)
		dst := &plain
		var line string
		switch {
		case v.Kind() == reflect.Map && v.Len() == 0:
			line = f.key + " = {}\n"
		case v.Kind() == reflect.Slice && v.Len() == 0:
			line = f.key + " = []\n"
		default:
			var b bytes.Buffer
			if err := toml.NewEncoder(&b).Encode(map[string]any{f.key: v.Interface()}); err != nil {
				return fmt.Errorf("print config: %s: %w", f.key, err)
			}
			line = b.String()
			if v.Kind() == reflect.Map || kindName(f.typ) == "json" {
				dst = &tables
			}
		}
		fmt.Fprintf(dst, "\n# %s (%s, -%s)\n%s", f.help, f.env, f.flag, line)
	}
	if _, err := w.Write(plain.Bytes()); err != nil {
		return err
	}
	_, err := w.Write(tables.Bytes())
	return err
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
