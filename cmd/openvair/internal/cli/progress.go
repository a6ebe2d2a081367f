package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/openvair/openvair/cmd/openvair/internal/exitcode"
	"github.com/openvair/openvair/cmd/openvair/internal/units"
)

// Progress modes of --progress.
const (
	progressAuto   = "auto"   // a bar when stderr is a terminal, nothing otherwise
	progressAlways = "always" // a bar even when stderr is not a terminal
	progressPlain  = "plain"  // periodic lines, for logs
	progressNever  = "never"  // nothing
)

var progressModes = []string{progressAuto, progressAlways, progressPlain, progressNever}

// reporter shows the progress of a transfer.
type reporter interface {
	// Set reports the bytes done so far; safe for concurrent use.
	Set(done int64)
	// Done ends the display after success.
	Done()
	// Abort ends the display after a failure.
	Abort()
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// newReporter returns the reporter of a mode for a transfer of total bytes (-1: unknown) written to w.
func newReporter(mode string, w io.Writer, what string, total int64, interval time.Duration) (reporter, error) {
	switch mode {
	case progressAuto:
		if !isTerminal(w) {
			return nopReporter{}, nil
		}
		return newBar(w, what, total), nil
	case progressAlways:
		return newBar(w, what, total), nil
	case progressPlain:
		now := time.Now()
		return &plainReporter{w: w, what: what, total: total, interval: interval, start: now, printed: now}, nil
	case progressNever, "none":
		return nopReporter{}, nil
	}
	return nil, exitcode.Usagef("--progress %q: want auto, always, plain or never", mode)
}

type nopReporter struct{}

func (nopReporter) Set(int64) {}
func (nopReporter) Done()     {}
func (nopReporter) Abort()    {}

// barReporter draws a progress bar with bytes, rate and ETA.
type barReporter struct {
	bar *progressbar.ProgressBar
	w   io.Writer
}

func newBar(w io.Writer, what string, total int64) *barReporter {
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetDescription(what),
		progressbar.OptionSetWriter(w),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionFullWidth(),
		progressbar.OptionSetTheme(progressbar.Theme{Saucer: "=", SaucerHead: ">", SaucerPadding: " ", BarStart: "[", BarEnd: "]"}),
	)
	return &barReporter{bar: bar, w: w}
}

func (b *barReporter) Set(done int64) { _ = b.bar.Set64(done) }
func (b *barReporter) Done() {
	_ = b.bar.Finish()
	fmt.Fprintln(b.w)
}
func (b *barReporter) Abort() {
	_ = b.bar.Exit()
	fmt.Fprintln(b.w)
}

// plainReporter prints one line per interval (the first after one interval): bytes, percentage, rate and
// ETA, and a last line when the transfer ends.
type plainReporter struct {
	w        io.Writer
	what     string
	total    int64
	interval time.Duration
	start    time.Time

	mu      sync.Mutex
	done    int64
	printed time.Time
}

func (p *plainReporter) Set(done int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = done
	if now := time.Now(); now.Sub(p.printed) >= p.interval {
		p.printed = now
		p.line(now, "")
	}
}

// line prints the state; the caller holds mu.
func (p *plainReporter) line(now time.Time, suffix string) {
	el := now.Sub(p.start)
	rate := 0.0
	if el > 0 {
		rate = float64(p.done) / el.Seconds()
	}
	msg := fmt.Sprintf("%s: %s", p.what, units.FormatSize(p.done))
	if p.total > 0 {
		msg += fmt.Sprintf(" / %s (%d%%)", units.FormatSize(p.total), p.done*100/p.total)
	}
	msg += fmt.Sprintf(", %s/s", units.FormatSize(int64(rate)))
	switch {
	case suffix != "":
		msg += ", " + suffix
	case p.total > 0 && rate > 0:
		eta := time.Duration(float64(p.total-p.done) / rate * float64(time.Second))
		msg += ", ETA " + eta.Round(time.Second).String()
	}
	fmt.Fprintln(p.w, msg)
}

func (p *plainReporter) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.line(time.Now(), "done in "+time.Since(p.start).Round(time.Millisecond).String())
}

func (p *plainReporter) Abort() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.line(time.Now(), "failed")
}
