// Package cloudinit builds the NoCloud seed of a VM: the user-data, meta-data and network-config files
// cloud-init reads at first boot, written to an ISO 9660 image whose volume identifier is "cidata" (the
// label cloud-init's NoCloud datasource looks for). The SDK attaches the image to the VM as a read-only
// cdrom.
//
// # What the seed holds
//
//   - user-data is the caller's user_data, byte for byte. It must be a cloud-config document
//     ("#cloud-config" first line, then a YAML mapping), a script ("#!" first), or a MIME multipart message
//     (a "Content-Type: multipart/..." header). Jinja templates ("## template: jinja") and the other
//     cloud-init formats (#include, #cloud-config-archive, #cloud-boothook, ...) are refused. An empty
//     user_data is written as "#cloud-config\n" (NoCloud requires the file; this is an empty cloud-config).
//   - meta-data is the caller's meta_data (a YAML mapping) with "instance-id" set to the instance id the
//     caller passes (the VM's id, so it is stable across rebuilds of the seed and cloud-init runs its
//     per-instance modules once) unless meta_data has one, "local-hostname" set from hostname, and the
//     ssh_authorized_keys appended to "public-keys".
//   - network-config is the caller's network_config, byte for byte, when given (network config version 1
//     or 2, at the top level or under "network:").
//
// Hostname and keys go to meta-data, not user-data: cloud-init reads "local-hostname" and "public-keys"
// from the meta-data of every datasource (set_hostname and ssh modules; the keys go to the default user,
// as cloud-config's ssh_authorized_keys do), so user_data stays exactly what the caller sent whatever its
// format, and nothing needs to parse or rewrite a script or a multipart message.
//
// # Limits
//
// user_data, meta_data and network_config are at most MaxDocumentSize (64 KiB) each. cloud-init itself has
// no limit for NoCloud, which reads files from the seed; the 16 KiB often quoted is EC2's user-data limit,
// and some clouds allow 64 KiB. 64 KiB keeps the seed, the stored VM row and the API body small, and is
// far more than a cloud-config needs (larger payloads belong on an image or a URL the script fetches).
//
// # Secrets
//
// user_data and network_config may hold passwords and tokens. Validation messages never quote them,
// Redacted returns a copy fit for logs and readers without the right to see them, and Config's String and
// LogValue methods print that redacted form, so fmt and log/slog never show the secrets.
package cloudinit

import (
	"fmt"
	"log/slog"
	"slices"

	"github.com/openvair/openvair/internal/errkind"
)

// MaxDocumentSize is the largest user_data, meta_data or network_config accepted, in bytes.
const MaxDocumentSize = 64 << 10

// MaxSSHKeys is the largest number of ssh_authorized_keys accepted.
const MaxSSHKeys = 100

// RedactedMarker replaces user_data and network_config in Redacted.
const RedactedMarker = "<redacted>"

// fieldPrefix prefixes every field name in validation errors.
const fieldPrefix = "cloud_init."

// Config is the cloud_init part of a VM: what its NoCloud seed is built from. The zero Config is valid and
// gives a seed with just an instance id.
type Config struct {
	// UserData is "#cloud-config\n" followed by YAML, a script starting with "#!", or a MIME multipart
	// message. It may hold secrets: see Redacted.
	UserData string `json:"user_data,omitempty"`
	// MetaData is a YAML mapping merged into the seed's meta-data (instance-id, local-hostname and
	// public-keys are filled in).
	MetaData string `json:"meta_data,omitempty"`
	// NetworkConfig is a YAML network configuration, version 1 or 2. It may hold secrets: see Redacted.
	NetworkConfig string `json:"network_config,omitempty"`
	// SSHAuthorizedKeys are OpenSSH public keys ("ssh-ed25519 AAAA... comment"), one per element, given to
	// the image's default user.
	SSHAuthorizedKeys []string `json:"ssh_authorized_keys,omitempty"`
	// Hostname is the guest's host name (RFC 1123), written to meta-data as local-hostname.
	Hostname string `json:"hostname,omitempty"`
}

// Validate checks every field of c and reports every bad one at once as a *errkind.ValidationError
// (matching errkind.Invalid) of entity "vm" whose fields are "cloud_init.user_data",
// "cloud_init.ssh_authorized_keys[1]", ... A nil c is valid (no cloud-init). Messages never quote
// user_data or network_config.
func (c *Config) Validate() error {
	v := errkind.Validator{Entity: "vm"}
	c.Check(&v)
	return v.Err()
}

// Check records every bad field of c in v, named as Validate names them, so a caller can report them along
// with the other fields of its request. A nil c is valid.
func (c *Config) Check(v *errkind.Validator) {
	if c == nil {
		return
	}
	checkUserData(v, fieldPrefix+"user_data", c.UserData)
	checkHostname(v, fieldPrefix+"hostname", c.Hostname)
	checkSSHKeys(v, fieldPrefix+"ssh_authorized_keys", c.SSHAuthorizedKeys)
	checkMetaData(v, fieldPrefix+"meta_data", c)
	checkNetworkConfig(v, fieldPrefix+"network_config", c.NetworkConfig)
}

// Redacted returns a copy of c with a non-empty user_data and network_config replaced by RedactedMarker,
// for logs and for readers not allowed to see them. meta_data, keys and hostname are kept.
func (c Config) Redacted() Config {
	if c.UserData != "" {
		c.UserData = RedactedMarker
	}
	if c.NetworkConfig != "" {
		c.NetworkConfig = RedactedMarker
	}
	c.SSHAuthorizedKeys = slices.Clone(c.SSHAuthorizedKeys)
	return c
}

// String describes c without its secrets (and without the bulk of the documents), so that printing a
// Config with fmt's %v or %s is safe.
func (c Config) String() string {
	return fmt.Sprintf("cloud_init{user_data: %s, meta_data: %d bytes, network_config: %s, ssh_authorized_keys: %d, hostname: %q}",
		redactedSize(c.UserData), len(c.MetaData), redactedSize(c.NetworkConfig), len(c.SSHAuthorizedKeys), c.Hostname)
}

// LogValue implements slog.LogValuer: logging a Config logs its redacted form.
func (c Config) LogValue() slog.Value {
	r := c.Redacted()
	return slog.GroupValue(
		slog.String("user_data", r.UserData),
		slog.String("meta_data", r.MetaData),
		slog.String("network_config", r.NetworkConfig),
		slog.Int("ssh_authorized_keys", len(r.SSHAuthorizedKeys)),
		slog.String("hostname", r.Hostname),
	)
}

// redactedSize is RedactedMarker with the size of a non-empty secret document, or "none".
func redactedSize(s string) string {
	if s == "" {
		return "none"
	}
	return fmt.Sprintf("%s (%d bytes)", RedactedMarker, len(s))
}
