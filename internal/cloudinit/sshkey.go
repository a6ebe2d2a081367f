package cloudinit

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math/big"
	"strings"

	"github.com/openvair/openvair/internal/errkind"
)

// maxSSHKeyLen bounds one authorized key line; a 16384-bit RSA key is under 3 KiB.
const maxSSHKeyLen = 8 << 10

// minRSABits is the smallest RSA modulus OpenSSH's sshd accepts.
const minRSABits = 1024

// sshKeyTypes are the accepted key types, in the order messages list them.
var sshKeyTypes = []string{
	"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
	"sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
}

// ecdsaPointLen is the length of an uncompressed ECDSA public point per curve.
var ecdsaPointLen = map[string]int{"nistp256": 65, "nistp384": 97, "nistp521": 133}

// checkSSHKeys checks each key, reporting a bad one as field[i].
func checkSSHKeys(v *errkind.Validator, field string, keys []string) {
	if len(keys) > MaxSSHKeys {
		v.Add(field, "has %d keys, more than the %d allowed", len(keys), MaxSSHKeys)
		return
	}
	for i, k := range keys {
		if err := checkSSHKey(k); err != nil {
			v.Add(fmt.Sprintf("%s[%d]", field, i), "%s", err)
		}
	}
}

// checkSSHKey checks that line is one OpenSSH public key, "<type> <base64> [comment]" (no authorized_keys
// options): the type is one of sshKeyTypes, the body is base64 of the key blob, the blob names the same type
// and holds exactly the fields of that type (an RSA modulus of at least 1024 bits, an ECDSA point of the
// right curve and size, a 32-byte Ed25519 key).
func checkSSHKey(line string) error {
	line = strings.TrimSpace(line)
	switch {
	case line == "":
		return fmt.Errorf("must not be empty")
	case strings.Contains(line, "PRIVATE KEY"):
		return fmt.Errorf("is a private key: give the public key (the .pub file)")
	case len(line) > maxSSHKeyLen:
		return fmt.Errorf("is %d bytes, more than the %d allowed", len(line), maxSSHKeyLen)
	case strings.ContainsAny(line, "\r\n\x00"):
		return fmt.Errorf("must be a single line: give one key per element")
	}
	fields := strings.Fields(line)
	if len(fields) < 2 {
		return fmt.Errorf(`must be an OpenSSH public key: "<type> <base64> [comment]"`)
	}
	typ := fields[0]
	if !knownSSHKeyType(typ) {
		return fmt.Errorf(`must be an OpenSSH public key "<type> <base64> [comment]" without options; the type must be one of %s`,
			strings.Join(sshKeyTypes, ", "))
	}
	blob, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil {
		return fmt.Errorf("the key body is not valid base64")
	}
	return checkKeyBlob(typ, blob)
}

// knownSSHKeyType reports whether typ is one of sshKeyTypes.
func knownSSHKeyType(typ string) bool {
	for _, t := range sshKeyTypes {
		if t == typ {
			return true
		}
	}
	return false
}

// checkKeyBlob checks the SSH wire encoding of a public key of type typ (RFC 4253 6.6, RFC 5656 3.1,
// RFC 8709 4, OpenSSH PROTOCOL.u2f).
func checkKeyBlob(typ string, blob []byte) error {
	r := wireReader{b: blob}
	inner, ok := r.str()
	if !ok {
		return fmt.Errorf("the key body is not an SSH public key")
	}
	if string(inner) != typ {
		return fmt.Errorf("the key body is of type %q, not %s", truncate(string(inner), 40), typ)
	}
	bad := fmt.Errorf("the key body is not a valid %s key", typ)
	switch typ {
	case "ssh-ed25519", "sk-ssh-ed25519@openssh.com":
		if pk, ok := r.str(); !ok || len(pk) != 32 {
			return bad
		}
	case "ssh-rsa":
		e, ok1 := r.str()
		n, ok2 := r.str()
		if !ok1 || !ok2 || !positiveMPInt(e) || !positiveMPInt(n) {
			return bad
		}
		if bits := new(big.Int).SetBytes(n).BitLen(); bits < minRSABits {
			return fmt.Errorf("the RSA key has %d bits, fewer than the %d sshd accepts", bits, minRSABits)
		}
	default: // ecdsa-sha2-nistpN and sk-ecdsa-sha2-nistp256@openssh.com
		curve := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(typ, "sk-"), "ecdsa-sha2-"), "@openssh.com")
		name, ok1 := r.str()
		q, ok2 := r.str()
		if !ok1 || !ok2 || string(name) != curve || len(q) != ecdsaPointLen[curve] || q[0] != 4 {
			return bad
		}
	}
	if strings.HasPrefix(typ, "sk-") {
		if app, ok := r.str(); !ok || len(app) == 0 {
			return bad
		}
	}
	if len(r.b) != 0 {
		return bad
	}
	return nil
}

// positiveMPInt reports whether b is a positive SSH mpint (two's complement, big-endian, minimal).
func positiveMPInt(b []byte) bool {
	if len(b) == 0 || b[0]&0x80 != 0 {
		return false
	}
	return !(b[0] == 0 && (len(b) == 1 || b[1]&0x80 == 0))
}

// wireReader reads SSH wire-format strings.
type wireReader struct{ b []byte }

// str reads a uint32-length-prefixed string.
func (r *wireReader) str() ([]byte, bool) {
	if len(r.b) < 4 {
		return nil, false
	}
	n := binary.BigEndian.Uint32(r.b)
	if uint64(n) > uint64(len(r.b)-4) {
		return nil, false
	}
	s := r.b[4 : 4+n]
	r.b = r.b[4+n:]
	return s, true
}

// truncate cuts s to at most n bytes for a message (%q makes the rest printable).
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
