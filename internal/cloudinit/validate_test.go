package cloudinit

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/internal/errkind"
)

// Keys made with ssh-keygen for these tests.
const (
	keyEd25519  = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINQ2tCcxR7/9exeg7yOA0253yKkemt4BpIny0Ect5Bjm user@ed25519"
	keyRSA2048  = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCnOR1moDpe8OW/Zbw2q3DqHkn5GL3ii7Nv0xCcJC0WwJScqkJFuOh5lm+URfOgMU0bc2WIIcUHVLiyaEEf3MP10LsKAmV5Rf06RVMNfLt9dnPMfunzjsv3BIIidXUkQTCoRGFQCKlJ/qWkwPMQCVzze/JZWUTFp+AXzerrgA/FaNlBtzVJp4gSgdaM8h9W+XlHDvDUunAl5d+x1OPIh7thP202Hbjogox+DXSl4ViCZYSSFJJvGI1YH0/S7+rjhGbYNZZ8fhlzA2oxFMBnq0bqTv/TZTBIkQbCC5HUIHP4Lhw5qxiq2TowFiksfDV8I8NCQB5/zEtAhGzQ7vpSOGKJ user@rsa2048"
	keyRSA1024  = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC4Vl/HtFhPnZ0Ex0BXEUh+qkqxlGhXxvMWYyLd2OaZuBS1RZuiMIByMT/3lXVIE3EdPjyYGPsjcwQIBzpoV8gZDJIrRLNB6tEOIgzplGyRe2mbWLTq7qPZSoF2uCqV5XDFt2OJlkdWKgSMu6ZYUpymH1OPJBVoU0jBvvD/HT5WZw=="
	keyECDSA256 = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMRWH347Q2eyHl2+GnO9UCw33Hzipt9zeyz2Cmuwm7gEoGlZo540WbEqd4ZLJLRk9wNTne/StmZwhxavxWKSAJE= user@ecdsa256"
	keyECDSA384 = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBED2YOJgXbiVb2fZcX+7tl07pJQ+PfYG2YPBlP0jxn266QWeZRFAtjKAxbX7DoBdlhkhHf7VBiJu5d8UckfQ4NK8zRQLm6EID2psvraAu9HraZ0DVyqpf7XQuYhmKfnbQA=="
	keyECDSA521 = "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBACDs2DPeRbhZ5ZWdbI4AkeVKiPQwcghezSnYsmyAdQ/cnZlGK7KB297zam+fJf7RUHejAu2NpuZazF99TQ9RnkehQCucDOI5VeUkgM7vOCimP0il3Zt7282Wuygmq27QRt0A/eaoBovSw53KNmMA2C8+Iu6inAS9MUocTYr/k7fkUNSSQ== user@ecdsa521"
)

// wireKey returns an authorized key line of type typ whose blob is typ followed by parts, each as an SSH
// wire string.
func wireKey(typ, blobType string, parts ...[]byte) string {
	var b bytes.Buffer
	for _, p := range append([][]byte{[]byte(blobType)}, parts...) {
		_ = binary.Write(&b, binary.BigEndian, uint32(len(p)))
		b.Write(p)
	}
	return typ + " " + base64.StdEncoding.EncodeToString(b.Bytes()) + " test"
}

// point returns an uncompressed ECDSA point of n bytes.
func point(n int) []byte {
	p := bytes.Repeat([]byte{7}, n)
	p[0] = 4
	return p
}

// fieldErrors returns the field errors of err by field; err must be a *errkind.ValidationError.
func fieldErrors(t *testing.T, err error) map[string]string {
	t.Helper()
	var ve *errkind.ValidationError
	require.True(t, errors.As(err, &ve), "want a *errkind.ValidationError, got %v", err)
	require.ErrorIs(t, err, errkind.Invalid)
	assert.Equal(t, "vm", ve.Entity)
	out := map[string]string{}
	for _, f := range ve.Fields {
		_, dup := out[f.Field]
		assert.False(t, dup, "field %s reported twice", f.Field)
		out[f.Field] = f.Message
	}
	return out
}

func TestValidate(t *testing.T) {
	skED := wireKey("sk-ssh-ed25519@openssh.com", "sk-ssh-ed25519@openssh.com", bytes.Repeat([]byte{1}, 32), []byte("ssh:"))
	skECDSA := wireKey("sk-ecdsa-sha2-nistp256@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com", []byte("nistp256"), point(65), []byte("ssh:"))
	multipart := "Content-Type: multipart/mixed; boundary=\"XYZ\"\nMIME-Version: 1.0\n\n--XYZ\nContent-Type: text/cloud-config\n\n#cloud-config\n--XYZ--\n"

	tests := []struct {
		name string
		cfg  Config
		want map[string]string // field → substring of its message; nil for a valid Config
	}{
		{name: "empty", cfg: Config{}},
		{name: "cloud-config", cfg: Config{UserData: "#cloud-config\npackages: [nginx]\nusers:\n  - name: ops\n    sudo: ALL=(ALL) NOPASSWD:ALL\n"}},
		{name: "cloud-config header only", cfg: Config{UserData: "#cloud-config\n"}},
		{name: "cloud-config CRLF and trailing blanks", cfg: Config{UserData: "#cloud-config  \r\nruncmd:\r\n  - [ls]\r\n"}},
		{name: "cloud-config null document", cfg: Config{UserData: "#cloud-config\n---\n"}},
		{name: "script", cfg: Config{UserData: "#!/bin/sh\necho {not: yaml: [\n"}},
		{name: "multipart", cfg: Config{UserData: multipart}},
		{name: "multipart after MIME-Version", cfg: Config{UserData: "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b--\n"}},
		{name: "all fields", cfg: Config{
			UserData:          "#cloud-config\nhostname: x\n",
			MetaData:          "instance-id: i-1\nlocal-hostname: web-1.example.com\npublic-keys: [\"" + keyEd25519 + "\"]\n",
			NetworkConfig:     "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n",
			SSHAuthorizedKeys: []string{keyEd25519, keyRSA2048, keyRSA1024, keyECDSA256, keyECDSA384, keyECDSA521, skED, skECDSA, "  " + keyEd25519 + "  "},
			Hostname:          "web-1.example.com",
		}},
		{name: "network v1", cfg: Config{NetworkConfig: "version: 1\nconfig:\n  - type: physical\n    name: eth0\n    subnets: [{type: dhcp}]\n"}},
		{name: "network under network:", cfg: Config{NetworkConfig: "network:\n  version: 2\n  ethernets: {}\n"}},
		{name: "hostname single label", cfg: Config{Hostname: "A1"}},
		{name: "hostname max lengths", cfg: Config{Hostname: strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)}},

		{name: "bad YAML names the line",
			cfg:  Config{UserData: "#cloud-config\npackages:\n  - a\n bad: [\n"},
			want: map[string]string{"cloud_init.user_data": "cloud-config invalid YAML: line 4"}},
		{name: "tab indentation",
			cfg:  Config{UserData: "#cloud-config\nruncmd:\n\t- ls\n"},
			want: map[string]string{"cloud_init.user_data": "line 3"}},
		{name: "cloud-config not a mapping",
			cfg:  Config{UserData: "#cloud-config\n- a\n- b\n"},
			want: map[string]string{"cloud_init.user_data": "must be a YAML mapping, not a sequence (line 2)"}},
		{name: "cloud-config two documents",
			cfg:  Config{UserData: "#cloud-config\na: 1\n---\nb: 2\n"},
			want: map[string]string{"cloud_init.user_data": "single YAML document, a second one starts at line 3"}},
		{name: "jinja refused",
			cfg:  Config{UserData: "## template: jinja\n#cloud-config\nhostname: {{ v1.local_hostname }}\n"},
			want: map[string]string{"cloud_init.user_data": "Jinja templates"}},
		{name: "cloud-config-archive refused",
			cfg:  Config{UserData: "#cloud-config-archive\n- type: text/cloud-config\n"},
			want: map[string]string{"cloud_init.user_data": `"#cloud-config-archive" user_data is not supported; user_data must start with "#cloud-config"`}},
		{name: "include refused",
			cfg:  Config{UserData: "#include\nhttps://example.com/ud\n"},
			want: map[string]string{"cloud_init.user_data": `"#include" user_data is not supported`}},
		{name: "plain text refused",
			cfg:  Config{UserData: "packages: [nginx]\n"},
			want: map[string]string{"cloud_init.user_data": `unrecognized format; user_data must start with "#cloud-config" (cloud-config YAML) or "#!" (a script), or be a MIME multipart message`}},
		{name: "header not on the first byte",
			cfg:  Config{UserData: "\n#cloud-config\n"},
			want: map[string]string{"cloud_init.user_data": "unrecognized format"}},
		{name: "single-part MIME refused",
			cfg:  Config{UserData: "Content-Type: text/cloud-config\n\n#cloud-config\n"},
			want: map[string]string{"cloud_init.user_data": "unrecognized format"}},
		{name: "multipart without boundary",
			cfg:  Config{UserData: "Content-Type: multipart/mixed\n\n--x--\n"},
			want: map[string]string{"cloud_init.user_data": "boundary"}},
		{name: "user_data too large",
			cfg:  Config{UserData: "#!/bin/sh\n" + strings.Repeat("#", MaxDocumentSize)},
			want: map[string]string{"cloud_init.user_data": fmt.Sprintf("is %d bytes, more than the 65536 allowed", MaxDocumentSize+10)}},

		{name: "bad keys by index",
			cfg: Config{SSHAuthorizedKeys: []string{
				keyEd25519,
				"ssh-ed25519 not*base64 me",
				"ssh-rsa " + strings.Fields(keyEd25519)[1],
				`command="ls" ` + keyEd25519,
				"ssh-dss AAAAB3NzaC1kc3MAAACBAP me",
				"",
				"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----",
				keyEd25519 + "\n" + keyRSA2048,
				"ssh-ed25519",
				wireKey("ssh-rsa", "ssh-rsa", []byte{1, 0, 1}, append([]byte{0}, bytes.Repeat([]byte{0xff}, 64)...)),
				wireKey("ssh-ed25519", "ssh-ed25519", bytes.Repeat([]byte{1}, 32), []byte("extra")),
				wireKey("ssh-ed25519", "ssh-ed25519", bytes.Repeat([]byte{1}, 31)),
				wireKey("ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384", []byte("nistp256"), point(65)),
				wireKey("sk-ssh-ed25519@openssh.com", "sk-ssh-ed25519@openssh.com", bytes.Repeat([]byte{1}, 32)),
				"ssh-ed25519 AAAA",
			}},
			want: map[string]string{
				"cloud_init.ssh_authorized_keys[1]":  "not valid base64",
				"cloud_init.ssh_authorized_keys[2]":  `the key body is of type "ssh-ed25519", not ssh-rsa`,
				"cloud_init.ssh_authorized_keys[3]":  "without options; the type must be one of ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256",
				"cloud_init.ssh_authorized_keys[4]":  "the type must be one of",
				"cloud_init.ssh_authorized_keys[5]":  "must not be empty",
				"cloud_init.ssh_authorized_keys[6]":  "is a private key",
				"cloud_init.ssh_authorized_keys[7]":  "single line",
				"cloud_init.ssh_authorized_keys[8]":  "<type> <base64> [comment]",
				"cloud_init.ssh_authorized_keys[9]":  "the RSA key has 512 bits, fewer than the 1024 sshd accepts",
				"cloud_init.ssh_authorized_keys[10]": "not a valid ssh-ed25519 key",
				"cloud_init.ssh_authorized_keys[11]": "not a valid ssh-ed25519 key",
				"cloud_init.ssh_authorized_keys[12]": "not a valid ecdsa-sha2-nistp384 key",
				"cloud_init.ssh_authorized_keys[13]": "not a valid sk-ssh-ed25519@openssh.com key",
				"cloud_init.ssh_authorized_keys[14]": "not an SSH public key",
			}},
		{name: "too many keys",
			cfg:  Config{SSHAuthorizedKeys: make([]string, MaxSSHKeys+1)},
			want: map[string]string{"cloud_init.ssh_authorized_keys": "more than the 100 allowed"}},

		{name: "hostname leading hyphen", cfg: Config{Hostname: "-web"},
			want: map[string]string{"cloud_init.hostname": `label "-web" must be letters, digits and hyphens`}},
		{name: "hostname underscore", cfg: Config{Hostname: "web_1.example.com"},
			want: map[string]string{"cloud_init.hostname": `label "web_1"`}},
		{name: "hostname trailing dot", cfg: Config{Hostname: "web.example.com."},
			want: map[string]string{"cloud_init.hostname": "without empty labels or a trailing dot"}},
		{name: "hostname label too long", cfg: Config{Hostname: "a." + strings.Repeat("b", 64)},
			want: map[string]string{"cloud_init.hostname": "label 2 is 64 characters, more than 63"}},
		{name: "hostname too long", cfg: Config{Hostname: strings.Repeat(strings.Repeat("a", 63)+".", 4)[:254]},
			want: map[string]string{"cloud_init.hostname": "at most 253 characters"}},
		{name: "hostname space", cfg: Config{Hostname: "web 1"},
			want: map[string]string{"cloud_init.hostname": "letters, digits and hyphens"}},

		{name: "meta_data not a mapping", cfg: Config{MetaData: "just text"},
			want: map[string]string{"cloud_init.meta_data": "must be a YAML mapping, not a scalar (line 1)"}},
		{name: "meta_data bad YAML", cfg: Config{MetaData: "a: b\nc: [\n"},
			want: map[string]string{"cloud_init.meta_data": "invalid YAML: line 2: "}},
		{name: "meta_data empty instance-id", cfg: Config{MetaData: "x: 1\ninstance-id:\n"},
			want: map[string]string{"cloud_init.meta_data": "instance-id (line 2) must be a non-empty string"}},
		{name: "meta_data local-hostname conflicts", cfg: Config{MetaData: "local-hostname: a\n", Hostname: "b"},
			want: map[string]string{"cloud_init.meta_data": `local-hostname (line 1) differs from hostname "b"`}},
		{name: "meta_data public-keys mapping with keys", cfg: Config{MetaData: "public-keys:\n  k: x\n", SSHAuthorizedKeys: []string{keyEd25519}},
			want: map[string]string{"cloud_init.meta_data": "public-keys (line 2) must be a string or a list of strings"}},
		{name: "meta_data too large", cfg: Config{MetaData: "a: " + strings.Repeat("b", MaxDocumentSize)},
			want: map[string]string{"cloud_init.meta_data": "more than the 65536 allowed"}},

		{name: "network no version", cfg: Config{NetworkConfig: "ethernets: {}\n"},
			want: map[string]string{"cloud_init.network_config": `must have "version: 1" or "version: 2"`}},
		{name: "network only comments", cfg: Config{NetworkConfig: "# nothing\n"},
			want: map[string]string{"cloud_init.network_config": `must have "version: 1" or "version: 2"`}},
		{name: "network version 3", cfg: Config{NetworkConfig: "network:\n  version: 3\n"},
			want: map[string]string{"cloud_init.network_config": "version (line 2) must be the number 1 or 2"}},
		{name: "network version string", cfg: Config{NetworkConfig: "version: \"2\"\n"},
			want: map[string]string{"cloud_init.network_config": "version (line 1) must be the number 1 or 2"}},
		{name: "network bad YAML", cfg: Config{NetworkConfig: "version: 2\nethernets:\n  eth0: {dhcp4: true\n"},
			want: map[string]string{"cloud_init.network_config": "invalid YAML: line"}},
		{name: "network a list", cfg: Config{NetworkConfig: "- version: 2\n"},
			want: map[string]string{"cloud_init.network_config": "must be a YAML mapping, not a sequence"}},
		{name: "network too large", cfg: Config{NetworkConfig: "version: 2\n#" + strings.Repeat("x", MaxDocumentSize)},
			want: map[string]string{"cloud_init.network_config": "more than the 65536 allowed"}},

		{name: "every field at once",
			cfg: Config{UserData: "nope", MetaData: "[1]", NetworkConfig: "version: 9", SSHAuthorizedKeys: []string{keyEd25519, "x"}, Hostname: "a..b"},
			want: map[string]string{
				"cloud_init.user_data":              "unrecognized format",
				"cloud_init.meta_data":              "must be a YAML mapping",
				"cloud_init.network_config":         "must be the number 1 or 2",
				"cloud_init.ssh_authorized_keys[1]": "OpenSSH public key",
				"cloud_init.hostname":               "empty labels",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			got := fieldErrors(t, err)
			require.Len(t, got, len(tt.want), "fields: %v", got)
			for field, sub := range tt.want {
				require.Contains(t, got, field)
				assert.Contains(t, got[field], sub, field)
			}
		})
	}
}

func TestYAMLErrorLine(t *testing.T) {
	for _, tt := range []struct {
		doc  string
		line string
	}{
		{"#cloud-config\npackages:\n  - a\n bad: [\n", "line 4: "},
		{"a: 1\nb:\n  c: 2\n d: 3\ne: 4\n", "line 4: "},
		{"a: \"open\nb: 2\n", "line 1: "},
		{"a: [1,\n  2]\nb: {\nc: 3\n", "line 3: "},
		{"a: 1\n---\nb: 1\nc: : :\n", "line 4: "},
		{"a: 1\nb: 2\nc: - x", "line 3: "},
		{"a: 1\n\tb: 2\n", "line 2: "},
	} {
		_, _, msg := parseMapping(tt.doc)
		assert.Contains(t, msg, "invalid YAML: "+tt.line, "%q", tt.doc)
		assert.NotContains(t, msg[len("invalid YAML: line 1: "):], "line", "one line number: %s", msg)
	}
}

func TestValidateNil(t *testing.T) {
	var c *Config
	assert.NoError(t, c.Validate())
}

func TestCheckAddsToCallersValidator(t *testing.T) {
	v := errkind.Validator{Entity: "vm"}
	v.Add("name", "must not be empty")
	(&Config{Hostname: "-x"}).Check(&v)
	got := fieldErrors(t, v.Err())
	assert.Equal(t, []string{"cloud_init.hostname", "name"}, sortedKeys(got))
}

// TestMessagesDoNotQuoteSecrets checks that no validation message repeats user_data or network_config.
func TestMessagesDoNotQuoteSecrets(t *testing.T) {
	const secret = "hunter2-S3CRET"
	for _, c := range []Config{
		{UserData: "#cloud-config\npassword: " + secret + "\n  bad: [\n"},
		{UserData: "#cloud-config\n- " + secret + "\n"},
		{UserData: secret + "\n"},
		{UserData: "#" + secret + "\n"},
		{UserData: "## template: jinja " + secret + "\n"},
		{NetworkConfig: "version: " + secret + "\n"},
		{NetworkConfig: "wifis: {psk: " + secret + "\n"},
		{NetworkConfig: secret},
	} {
		err := c.Validate()
		require.Error(t, err)
		assert.NotContains(t, err.Error(), secret)
	}
}

func TestRedacted(t *testing.T) {
	c := Config{UserData: "#cloud-config\npassword: s3cret\n", MetaData: "a: 1\n", NetworkConfig: "version: 2\n",
		SSHAuthorizedKeys: []string{keyEd25519}, Hostname: "web"}
	r := c.Redacted()
	assert.Equal(t, Config{UserData: RedactedMarker, MetaData: "a: 1\n", NetworkConfig: RedactedMarker,
		SSHAuthorizedKeys: []string{keyEd25519}, Hostname: "web"}, r)
	r.SSHAuthorizedKeys[0] = "changed"
	assert.Equal(t, keyEd25519, c.SSHAuthorizedKeys[0], "the copy does not share the keys")
	assert.Equal(t, Config{}, Config{}.Redacted(), "empty fields stay empty")

	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%v", &c)} {
		assert.NotContains(t, s, "s3cret")
		assert.Contains(t, s, "<redacted> (31 bytes)")
	}
	var b bytes.Buffer
	slog.New(slog.NewTextHandler(&b, nil)).Info("create", "cloud_init", c)
	assert.NotContains(t, b.String(), "s3cret")
	assert.Contains(t, b.String(), "cloud_init.user_data=<redacted>")
	assert.Contains(t, b.String(), "cloud_init.hostname=web")
}
