package qcow2

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openvair/openvair/internal/testenv"
)

// BenchmarkCreate compares our Create (opening, writing and closing a new file) with running
// `qemu-img create -f qcow2` for the same size and preallocation in the same run. The metric
// x-vs-qemu-img is qemu-img's time per image divided by ours: above 1 means we are faster.
func BenchmarkCreate(b *testing.B) {
	bin := testenv.LookPath(b, "qemu-img")
	cases := []struct {
		size     int64
		prealloc string
	}{
		{10 * giB, PreallocOff},
		{tiB, PreallocOff},
		{10 * giB, PreallocMetadata},
	}
	for _, c := range cases {
		b.Run(fmt.Sprintf("%dGiB-%s", c.size/giB, c.prealloc), func(b *testing.B) {
			dir := b.TempDir()
			path := filepath.Join(dir, "img.qcow2")
			ours := func() {
				_ = os.Remove(path)
				f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Create(f, c.size, CreateOptions{Preallocation: c.prealloc}); err != nil {
					b.Fatal(err)
				}
				if err := f.Close(); err != nil {
					b.Fatal(err)
				}
			}
			qemu := func() {
				_ = os.Remove(path)
				out, err := runCmd(bin, "create", "-q", "-f", "qcow2", "-o", "preallocation="+c.prealloc, path, fmt.Sprint(c.size))
				if err != nil {
					b.Fatalf("qemu-img create: %v: %s", err, out)
				}
			}
			// Baseline in the same run, outside the timed loop: enough qemu-img runs for a stable mean.
			b.StopTimer()
			runs := 20
			start := time.Now()
			for range runs {
				qemu()
			}
			qemuPer := time.Since(start) / time.Duration(runs)
			b.StartTimer()

			start = time.Now()
			for b.Loop() {
				ours()
			}
			oursPer := time.Since(start) / time.Duration(b.N)
			b.ReportMetric(float64(qemuPer)/float64(oursPer), "x-vs-qemu-img")
			b.ReportMetric(float64(qemuPer.Microseconds()), "qemu-img-us/op")
		})
	}
}
