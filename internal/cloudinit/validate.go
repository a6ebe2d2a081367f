package cloudinit

import (
	"bufio"
	"fmt"
	"mime"
	"net/textproto"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/openvair/openvair/internal/errkind"
)

// userDataKind is the format of a user_data.
type userDataKind int

const (
	userDataEmpty userDataKind = iota
	userDataCloudConfig
	userDataScript
	userDataMultipart
	userDataJinja
	userDataUnknown
)

// cloudConfigHeader starts a cloud-config user_data.
const cloudConfigHeader = "#cloud-config"

// allowedUserData names the accepted formats, for messages.
const allowedUserData = `user_data must start with "#cloud-config" (cloud-config YAML) or "#!" (a script), or be a MIME multipart message ("Content-Type: multipart/...")`

// jinjaHeader matches the first line of a cloud-init Jinja template.
var jinjaHeader = regexp.MustCompile(`(?i)^##\s*template:`)

// otherHeaders are cloud-init user-data formats that are refused; a user_data starting with one is named
// in the message (only these known headers are quoted: user_data is secret).
var otherHeaders = []string{
	"#cloud-config-archive", "#cloud-config-jsonp", "#cloud-boothook", "#include-once", "#include",
	"#part-handler", "#upstart-job",
}

// firstLine returns the first line of s without its line ending and trailing blanks.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimRight(s, " \t\r")
}

// classifyUserData tells the format of a user_data from its first line (or its MIME headers).
func classifyUserData(s string) userDataKind {
	line := firstLine(s)
	switch {
	case s == "":
		return userDataEmpty
	case strings.HasPrefix(s, "#!"):
		return userDataScript
	case jinjaHeader.MatchString(line):
		return userDataJinja
	case line == cloudConfigHeader || strings.HasPrefix(line, cloudConfigHeader+" ") || strings.HasPrefix(line, cloudConfigHeader+"\t"):
		return userDataCloudConfig
	case isMultipart(s):
		return userDataMultipart
	}
	return userDataUnknown
}

// isMultipart reports whether s starts with MIME headers whose Content-Type is multipart/*. The parts are
// not parsed: cloud-init does that.
func isMultipart(s string) bool {
	if strings.HasPrefix(s, "#") {
		return false
	}
	h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(s))).ReadMIMEHeader()
	if err != nil {
		return false
	}
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && strings.HasPrefix(mt, "multipart/")
}

// checkUserData checks a user_data: its size and format, and for cloud-config that the YAML is a mapping.
func checkUserData(v *errkind.Validator, field, s string) {
	if len(s) > MaxDocumentSize {
		v.Add(field, "is %d bytes, more than the %d allowed", len(s), MaxDocumentSize)
		return
	}
	switch classifyUserData(s) {
	case userDataEmpty, userDataScript:
	case userDataJinja:
		v.Add(field, `Jinja templates ("## template: jinja") are not supported: render the template before sending it`)
	case userDataCloudConfig:
		if _, _, msg := parseMapping(s); msg != "" {
			v.Add(field, "cloud-config %s", msg)
		}
	case userDataMultipart:
		if _, params, _ := mime.ParseMediaType(mimeContentType(s)); params["boundary"] == "" {
			v.Add(field, "MIME multipart user_data needs a boundary parameter in its Content-Type")
		}
	default:
		line := firstLine(s)
		for _, h := range otherHeaders {
			if strings.HasPrefix(line, h) {
				v.Add(field, "%q user_data is not supported; %s", h, allowedUserData)
				return
			}
		}
		v.Add(field, "unrecognized format; %s", allowedUserData)
	}
}

// mimeContentType returns the Content-Type header of a MIME message, or "".
func mimeContentType(s string) string {
	h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(s))).ReadMIMEHeader()
	if err != nil {
		return ""
	}
	return h.Get("Content-Type")
}

// hostLabel is one label of an RFC 1123 host name.
var hostLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// checkHostname checks a host name: dot-separated RFC 1123 labels (letters, digits and inner hyphens, 1 to
// 63 characters each), 253 characters in all. Empty is allowed (no host name).
func checkHostname(v *errkind.Validator, field, h string) {
	if h == "" {
		return
	}
	if len(h) > 253 {
		v.Add(field, "must be at most 253 characters")
		return
	}
	for i, label := range strings.Split(h, ".") {
		switch {
		case label == "":
			v.Add(field, "must be dot-separated labels, without empty labels or a trailing dot")
			return
		case len(label) > 63:
			v.Add(field, "label %d is %d characters, more than 63", i+1, len(label))
			return
		case !hostLabel.MatchString(label):
			v.Add(field, "label %q must be letters, digits and hyphens, not starting or ending with a hyphen", label)
			return
		}
	}
}

// checkMetaData checks meta_data: a YAML mapping whose instance-id, when given, is a non-empty scalar,
// whose local-hostname agrees with hostname, and whose public-keys can take the ssh_authorized_keys.
func checkMetaData(v *errkind.Validator, field string, c *Config) {
	if len(c.MetaData) > MaxDocumentSize {
		v.Add(field, "is %d bytes, more than the %d allowed", len(c.MetaData), MaxDocumentSize)
		return
	}
	_, root, msg := parseMapping(c.MetaData)
	if msg != "" {
		v.Add(field, "%s", msg)
		return
	}
	if root == nil {
		return
	}
	if id := lookup(root, "instance-id"); id != nil && (id.Kind != yaml.ScalarNode || isNull(id) || id.Value == "") {
		v.Add(field, "instance-id (line %d) must be a non-empty string, or be left out to use the VM's id", id.Line)
	}
	if lh := lookup(root, "local-hostname"); lh != nil && c.Hostname != "" && (lh.Kind != yaml.ScalarNode || lh.Value != c.Hostname) {
		v.Add(field, "local-hostname (line %d) differs from hostname %q: set one of them", lh.Line, c.Hostname)
	}
	if pk := lookup(root, "public-keys"); pk != nil && len(c.SSHAuthorizedKeys) > 0 && !mergeablePublicKeys(pk) {
		v.Add(field, "public-keys (line %d) must be a string or a list of strings to be merged with ssh_authorized_keys", pk.Line)
	}
}

// mergeablePublicKeys reports whether a meta-data public-keys value can take more keys: null, a string, or
// a sequence of strings.
func mergeablePublicKeys(n *yaml.Node) bool {
	switch n.Kind {
	case yaml.ScalarNode:
		return true
	case yaml.SequenceNode:
		for _, e := range n.Content {
			if e.Kind != yaml.ScalarNode {
				return false
			}
		}
		return true
	}
	return false
}

// checkNetworkConfig checks a network_config: a YAML mapping with version 1 or 2, at the top level or under
// "network:". The rest is left to cloud-init.
func checkNetworkConfig(v *errkind.Validator, field, s string) {
	if s == "" {
		return
	}
	if len(s) > MaxDocumentSize {
		v.Add(field, "is %d bytes, more than the %d allowed", len(s), MaxDocumentSize)
		return
	}
	_, root, msg := parseMapping(s)
	if msg != "" {
		v.Add(field, "%s", msg)
		return
	}
	if msg := networkVersion(root); msg != "" {
		v.Add(field, "%s", msg)
	}
}

// networkVersion checks the version of a network config's root mapping and returns what is wrong, or "".
func networkVersion(root *yaml.Node) string {
	const want = `must have "version: 1" or "version: 2", at the top level or under "network:"`
	if root == nil {
		return want
	}
	ver := lookup(root, "version")
	if ver == nil {
		if n := lookup(root, "network"); n != nil && n.Kind == yaml.MappingNode {
			ver = lookup(n, "version")
		}
	}
	switch {
	case ver == nil:
		return want
	case ver.Kind != yaml.ScalarNode || ver.Tag != "!!int" || (ver.Value != "1" && ver.Value != "2"):
		return fmt.Sprintf("version (line %d) must be the number 1 or 2", ver.Line)
	}
	return ""
}
