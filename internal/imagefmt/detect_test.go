package imagefmt

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/qcow2"
)

func TestDetect(t *testing.T) {
	cases := []struct {
		name string
		head func(t *testing.T) []byte
		want driver.ImageFormat
	}{
		{"empty", func(*testing.T) []byte { return nil }, driver.ImageRaw},
		{"three bytes of qcow2 magic", func(*testing.T) []byte { return []byte(qcow2.Magic[:3]) }, driver.ImageRaw},
		{"qcow2 magic alone", func(*testing.T) []byte { return []byte(qcow2.Magic) }, driver.ImageQCOW2},
		{"qcow2 from our Create", func(t *testing.T) []byte { return qcow2Image(t, 1<<30)[:HeadSize] }, driver.ImageQCOW2},
		{"qcow2 from qemu-img", func(t *testing.T) []byte { return qemuImage(t, "10G")[:HeadSize] }, driver.ImageQCOW2},
		{"qcow2 v2 from qemu-img", func(t *testing.T) []byte { return qemuImage(t, "-o", "compat=0.10", "1G")[:HeadSize] }, driver.ImageQCOW2},
		{"iso built by iso9660 writer", func(t *testing.T) []byte { return isoImage(t)[:HeadSize] }, driver.ImageISO},
		{"iso whole image", func(t *testing.T) []byte { return isoImage(t) }, driver.ImageISO},
		{"iso descriptor at 32769", func(*testing.T) []byte { return handISO(32769) }, driver.ImageISO},
		{"iso descriptor at 34817", func(*testing.T) []byte { return handISO(34817) }, driver.ImageISO},
		{"iso descriptor at 36865", func(*testing.T) []byte { return handISO(36865) }, driver.ImageISO},
		{"iso identifier cut short", func(*testing.T) []byte { return handISO(32769)[:32772] }, driver.ImageRaw},
		{"identifier at a wrong offset", func(*testing.T) []byte { return handISO(32768 + 2048*4 + 1) }, driver.ImageRaw},
		{"zeros", func(*testing.T) []byte { return make([]byte, HeadSize) }, driver.ImageRaw},
		{"random", func(*testing.T) []byte { return randomBytes(HeadSize, 1) }, driver.ImageRaw},
		{"qcow2 magic not at start", func(*testing.T) []byte { return append([]byte{0}, qcow2.Magic...) }, driver.ImageRaw},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, Detect(c.head(t)))
		})
	}
}

// FuzzDetect: Detect never panics, always answers one of the three formats, and agrees with the magic.
func FuzzDetect(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte(qcow2.Magic))
	f.Add(handISO(32769))
	f.Add(handISO(36865)[:36868])
	f.Add(qcow2Image(f, 1<<20)[:4096])
	f.Add(randomBytes(HeadSize, 2))
	f.Fuzz(func(t *testing.T, head []byte) {
		got := Detect(head)
		switch got {
		case driver.ImageQCOW2:
			if len(head) < 4 || string(head[:4]) != qcow2.Magic {
				t.Fatalf("qcow2 without magic")
			}
		case driver.ImageISO, driver.ImageRaw:
			if len(head) >= 4 && string(head[:4]) == qcow2.Magic {
				t.Fatalf("magic not recognised")
			}
		default:
			t.Fatalf("unknown format %q", got)
		}
	})
}
