// Package fake provides in-memory drivers for unit tests: a storage backend and a hypervisor that keep real
// state (pools, volumes, images, domains and their power states) and can be told to fail a chosen step.
// They are registered as "fake" in the driver registries.
package fake

import (
	"sync"
)

// Faults makes chosen operations fail. Operation names are the method names ("CreateVolume", "Start", ...).
type Faults struct {
	mu    sync.Mutex
	fails map[string]failure
	calls map[string]int
}

type failure struct {
	err   error
	times int // <0: always
}

// FailNext makes the next n calls of op return err (n < 0: every call until Clear).
func (f *Faults) FailNext(op string, err error, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fails == nil {
		f.fails = map[string]failure{}
	}
	f.fails[op] = failure{err: err, times: n}
}

// Clear removes every injected failure.
func (f *Faults) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fails = nil
}

// Calls reports how many times op was called.
func (f *Faults) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// check counts a call of op and returns the injected failure, if any.
func (f *Faults) check(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[op]++
	fl, ok := f.fails[op]
	if !ok || fl.times == 0 {
		return nil
	}
	if fl.times > 0 {
		fl.times--
		f.fails[op] = fl
	}
	return fl.err
}
