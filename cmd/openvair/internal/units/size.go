// Package units parses and prints the sizes people write: 1GiB, 512MiB, 10G, 1.5TB, 4096.
package units

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// suffixes maps a unit (lower case) to its multiplier. Binary units (KiB, or a bare K, M, G as qemu-img
// reads them) are powers of 1024; SI units (KB, MB, GB) are powers of 1000.
var suffixes = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	"p": 1 << 50, "pib": 1 << 50, "pb": 1e15,
}

// maxDigits bounds the number of a size: an int64 has 19 digits, a decimal with a unit a few more.
const maxDigits = 40

// ErrSize is wrapped by every error of ParseSize.
var ErrSize = errors.New("bad size")

// ParseSize reads a size in bytes: a number (decimals allowed with a unit) and an optional unit, with or
// without a space: "4096", "512MiB", "1 GiB", "1.5G", "10GB". Binary units and bare letters are powers of
// 1024, SI units (KB, MB, GB, TB, PB) powers of 1000. The result must be a whole number of bytes and fit
// in an int64; negative sizes are refused.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := suffixes[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("%w %q: want a number and a unit such as 512MiB, 1GiB, 10G or 4096 (bytes)", ErrSize, s)
	}
	if len(num) > maxDigits { // no size needs more, and big.Rat's parsing grows faster than the text
		return 0, fmt.Errorf("%w %q: the number has more than %d digits", ErrSize, s, maxDigits)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("%w %q: %q is not a number", ErrSize, s, num)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("%w %q: not a whole number of bytes", ErrSize, s)
	}
	n := r.Num()
	if !n.IsInt64() {
		return 0, fmt.Errorf("%w %q: too large", ErrSize, s)
	}
	return n.Int64(), nil
}

// binary are the IEC units FormatSize prints.
var binary = []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}

// FormatSize prints bytes in IEC units: "0 B", "512 B", "1 GiB", "9.3 MiB" (one decimal unless whole).
func FormatSize(n int64) string {
	if n < 0 {
		return "-" + FormatSize(-n)
	}
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	f := float64(n)
	u := 0
	for f >= 1024 && u < len(binary)-1 {
		f /= 1024
		u++
	}
	if f == math.Trunc(f) {
		return fmt.Sprintf("%.0f %s", f, binary[u])
	}
	s := strings.TrimSuffix(fmt.Sprintf("%.1f", f), ".0")
	if s == "1024" && u < len(binary)-1 {
		return "1 " + binary[u+1]
	}
	return s + " " + binary[u]
}
