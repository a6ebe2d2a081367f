package units

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"4096", 4096},
		{"0", 0},
		{"1B", 1},
		{"1KiB", 1 << 10},
		{"1k", 1 << 10},
		{"512MiB", 512 << 20},
		{"512 MiB", 512 << 20},
		{"1GiB", 1 << 30},
		{"1gib", 1 << 30},
		{"1G", 1 << 30},
		{"1.5G", 3 << 29},
		{"10GB", 10_000_000_000},
		{"2TiB", 2 << 40},
		{"1MB", 1_000_000},
		{" 64M ", 64 << 20},
		{"8PiB", 8 << 50},
	} {
		got, err := ParseSize(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}

func TestParseSizeErrors(t *testing.T) {
	for _, in := range []string{"", "GiB", "1XB", "-1G", "1.2.3G", "0.5B", "1.0000001K", "9EiB", "100000P", "1 G B", "abc"} {
		_, err := ParseSize(in)
		assert.ErrorIs(t, err, ErrSize, "%q", in)
	}
}

func TestFormatSize(t *testing.T) {
	for _, tc := range []struct {
		in   int64
		want string
	}{
		{0, "0 B"},
		{512, "512 B"},
		{1024, "1 KiB"},
		{1536, "1.5 KiB"},
		{64 << 20, "64 MiB"},
		{9705472, "9.3 MiB"},
		{270553174016, "252 GiB"},
		{1<<30 + 1<<20, "1 GiB"},
		{1 << 30, "1 GiB"},
		{1<<30 - 1, "1 GiB"},
		{1 << 40, "1 TiB"},
		{-2048, "-2 KiB"},
	} {
		assert.Equal(t, tc.want, FormatSize(tc.in), "%d", tc.in)
	}
}

// FormatSize prints what ParseSize reads back for whole units.
func TestRoundTrip(t *testing.T) {
	for _, n := range []int64{1, 1 << 10, 3 << 20, 7 << 30, 2 << 40} {
		got, err := ParseSize(FormatSize(n))
		require.NoError(t, err)
		assert.Equal(t, n, got)
	}
}

// FuzzParseSize: any text is either a size of zero or more bytes or an ErrSize, never a panic, and what
// FormatSize prints without a decimal reads back as that size, give or take its rounding.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"4096", "1GiB", "1.5G", "10GB", " 512 MiB ", "1.2.3", "-1", "9999999999999999999P", ".", "0.1B"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			require.ErrorIs(t, err, ErrSize)
			return
		}
		require.GreaterOrEqual(t, n, int64(0))
		if p := FormatSize(n); !strings.Contains(p, ".") { // "9.3 GiB" is not a whole number of bytes
			back, err := ParseSize(p)
			require.NoError(t, err, "FormatSize(%d) = %q reads back", n, p)
			assert.InDelta(t, float64(n), float64(back), float64(n)/20+1, "FormatSize(%d) = %q rounds to one decimal", n, p)
		}
	})
}
