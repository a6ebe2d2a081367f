package nfs

import (
	"context"
	"encoding/json"
	"net"
	"path"
	"regexp"
	"strings"

	"github.com/openvair/openvair/driver"
)

// Name is the name the backend registers under, and the storage type of NFS storages.
const Name = "nfs"

// Config is the configuration of an NFS storage: an NFSv3 export. The storage is the directory
// openvair-<storage id> on it.
type Config struct {
	Server  string `json:"server"`            // IP address or host name
	Export  string `json:"export"`            // exported path, clean and absolute
	Version int    `json:"version,omitempty"` // NFS version: 3 (the default and the only one)
}

const configSchema = `{
  "type": "object",
  "description": "An NFSv3 export; openvair keeps the storage in the directory openvair-<storage id> on it.",
  "properties": {
    "server": {"type": "string", "description": "IP address or host name of the NFS server."},
    "export": {"type": "string", "description": "Exported path: clean and absolute."},
    "version": {"type": "integer", "enum": [3], "default": 3, "description": "NFS version (3 only)."}
  },
  "required": ["server", "export"],
  "additionalProperties": false
}`

// ConfigSchema returns the JSON Schema of Config.
func (b *Backend) ConfigSchema() json.RawMessage { return json.RawMessage(configSchema) }

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// CheckConfig checks an NFS configuration without contacting the server (Prepare does): server is an IP
// address or a host name, export a clean absolute path, version 3 (filled in when absent). The location
// is "nfs:<server>:<export>".
func (b *Backend) CheckConfig(ctx context.Context, raw json.RawMessage) (driver.CheckedConfig, error) {
	var c Config
	if err := driver.DecodeConfig(raw, &c); err != nil {
		return driver.CheckedConfig{}, err
	}
	var v driver.ConfigChecker
	if net.ParseIP(c.Server) == nil && (len(c.Server) > 253 || !hostnameRE.MatchString(c.Server)) {
		v.Add("server", "must be an IP address or a host name")
	}
	v.Check(strings.HasPrefix(c.Export, "/") && path.Clean(c.Export) == c.Export && !strings.ContainsAny(c.Export, "\x00\n"),
		"export", "must be a clean absolute path")
	v.Check(c.Version == 0 || c.Version == 3, "version", "only NFS version 3 is supported")
	if err := v.Err(); err != nil {
		return driver.CheckedConfig{}, err
	}
	if c.Version == 0 {
		c.Version = 3
	}
	return driver.CheckedConfig{Config: driver.MustJSON(c), Location: "nfs:" + c.Server + ":" + c.Export}, ctx.Err()
}
