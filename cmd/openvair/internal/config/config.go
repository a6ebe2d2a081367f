// Package config keeps the CLI's remotes: named servers with their URL and where their token comes from,
// and which one is current, in $XDG_CONFIG_HOME/openvair/config.yaml. The file holds a token only when the
// user gave one directly; otherwise it holds the path of a token file, read at each call, so that rotating
// the token needs no change here. The file is written atomically with mode 0600 in a 0700 directory.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Remote is one server the CLI may talk to.
type Remote struct {
	// URL is the server's base URL (http or https).
	URL string `yaml:"url"`
	// TokenFile is the path of a file holding the bearer token, read at call time.
	TokenFile string `yaml:"token_file,omitempty"`
	// Token is the bearer token itself, when the user gave it directly rather than as a file.
	Token string `yaml:"token,omitempty"`
}

// Config is the content of the configuration file.
type Config struct {
	// Current names the remote used when no --remote flag or environment override says otherwise.
	Current string `yaml:"current,omitempty"`
	// Remotes maps names to servers.
	Remotes map[string]Remote `yaml:"remotes,omitempty"`
}

// ErrNoRemote is returned when a remote name is not configured.
var ErrNoRemote = errors.New("no such remote")

// nameRE is the form of a remote name.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// DefaultPath returns the configuration file's path: openvair/config.yaml under os.UserConfigDir
// ($XDG_CONFIG_HOME, else ~/.config on Linux).
func DefaultPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	return filepath.Join(dir, "openvair", "config.yaml"), nil
}

// Load reads the configuration at path; a missing file is an empty configuration.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Config{Remotes: map[string]Remote{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var c Config
	if err := yaml.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	if c.Remotes == nil {
		c.Remotes = map[string]Remote{}
	}
	return &c, nil
}

// Save writes the configuration to path atomically: a temporary file in the same directory with mode 0600,
// synced, then renamed over path. The directory is created with mode 0700 when missing.
func (c *Config) Save(path string) error {
	b, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("config: encode: %w", err)
	}
	return WriteFileAtomic(path, b)
}

// WriteFileAtomic writes data to path so that a reader sees either the old file or the whole new one, never
// a part: a temporary file (mode 0600) in the same directory, synced and renamed. Missing directories are
// created with mode 0700.
func WriteFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	f, err := os.CreateTemp(dir, ".config-*.tmp")
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	done = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// Add adds or replaces a remote after checking its name and URL; the first remote added becomes current.
func (c *Config) Add(name string, r Remote) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("remote name %q: use letters, digits, '.', '_' and '-' (at most 63)", name)
	}
	if err := CheckURL(r.URL); err != nil {
		return err
	}
	r.URL = strings.TrimRight(r.URL, "/")
	if c.Remotes == nil {
		c.Remotes = map[string]Remote{}
	}
	c.Remotes[name] = r
	if c.Current == "" {
		c.Current = name
	}
	return nil
}

// Remove removes a remote; removing the current one leaves no remote current.
func (c *Config) Remove(name string) error {
	if _, ok := c.Remotes[name]; !ok {
		return fmt.Errorf("%w %q", ErrNoRemote, name)
	}
	delete(c.Remotes, name)
	if c.Current == name {
		c.Current = ""
	}
	return nil
}

// Use makes a remote current.
func (c *Config) Use(name string) error {
	if _, ok := c.Remotes[name]; !ok {
		return fmt.Errorf("%w %q", ErrNoRemote, name)
	}
	c.Current = name
	return nil
}

// Names returns the remotes' names, sorted.
func (c *Config) Names() []string {
	names := make([]string, 0, len(c.Remotes))
	for n := range c.Remotes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// CheckURL reports whether u is an http or https URL with a host.
func CheckURL(u string) error {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return fmt.Errorf("URL %q: want http://host:port or https://host:port", u)
	}
	return nil
}

// ReadToken returns the remote's token: the token given directly, else the first line of its token file
// (read now), else "".
func (r Remote) ReadToken() (string, error) {
	if r.Token != "" {
		return r.Token, nil
	}
	if r.TokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(r.TokenFile)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
