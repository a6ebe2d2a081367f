package telemetry

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/driver/btrfs"
	"github.com/openvair/openvair/driver/fake"
	"github.com/openvair/openvair/driver/libvirt"
	"github.com/openvair/openvair/driver/localfs"
	"github.com/openvair/openvair/driver/nfs"
	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/reqctx"
)

// recorder counts the calls that reach a test double.
type recorder struct {
	mu     sync.Mutex
	called map[string]int
}

func newRecorder() *recorder { return &recorder{called: map[string]int{}} }

func (r *recorder) record(m string) {
	r.mu.Lock()
	r.called[m]++
	r.mu.Unlock()
}

func (r *recorder) count(m string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.called[m]
}

// stubStorage implements driver.StorageBackend and nothing else (the embedded interface promotes only its
// own methods); synthStorage extends it with stubs of optional interfaces.
type stubStorage struct {
	driver.StorageBackend
	*recorder
}

// stubHV implements driver.Hypervisor and nothing else.
type stubHV struct {
	driver.Hypervisor
	*recorder
}

type (
	stubCloner    struct{ r *recorder }
	stubReader    struct{ r *recorder }
	stubFiller    struct{ r *recorder }
	stubLinker    struct{ r *recorder }
	stubSweeper   struct{ r *recorder }
	stubAser      struct{ r *recorder }
	stubErrorAser struct{ r *recorder }
	stubWatcher   struct{ r *recorder }
	stubLister    struct{ r *recorder }
	stubLogger    struct{ r *recorder }
	stubSerial    struct{ r *recorder }
	stubInspector struct{ r *recorder }
	stubNetworks  struct{ r *recorder }
)

func (s stubCloner) CloneVolume(context.Context, driver.PoolSpec, driver.VolumeSpec, uuid.UUID) (driver.VolumeInfo, error) {
	s.r.record("CloneVolume")
	return driver.VolumeInfo{}, nil
}

func (s stubReader) OpenObject(context.Context, driver.PoolSpec, driver.ObjectKind, uuid.UUID) (driver.ObjectFile, error) {
	s.r.record("OpenObject")
	return nil, errkind.New(errkind.NotFound, "volume", "", "no such object")
}

func (s stubFiller) FillVolume(context.Context, driver.PoolSpec, driver.VolumeSpec, io.ReaderAt, int64, func(int64)) (driver.VolumeInfo, error) {
	s.r.record("FillVolume")
	return driver.VolumeInfo{}, nil
}

func (s stubLinker) LinkVolume(context.Context, driver.PoolSpec, driver.ObjectRef, driver.VolumeSpec) (driver.VolumeInfo, error) {
	s.r.record("LinkVolume")
	return driver.VolumeInfo{}, nil
}

func (s stubSweeper) SweepUploads(context.Context, driver.PoolSpec) error {
	s.r.record("SweepUploads")
	return nil
}

func (s stubAser) As(any) bool { s.r.record("As"); return true }

func (s stubErrorAser) ErrorAs(error, any) bool { s.r.record("ErrorAs"); return true }

func (s stubWatcher) WatchStates(context.Context) (<-chan driver.StateEvent, error) {
	s.r.record("WatchStates")
	return nil, nil
}

func (s stubLister) States(context.Context) (map[uuid.UUID]driver.DomainState, error) {
	s.r.record("States")
	return nil, nil
}

func (s stubLogger) ConsoleLog(context.Context, uuid.UUID, int64) ([]byte, error) {
	s.r.record("ConsoleLog")
	return nil, nil
}

func (s stubSerial) OpenSerial(context.Context, uuid.UUID) (io.ReadWriteCloser, error) {
	s.r.record("OpenSerial")
	return nil, nil
}

func (s stubInspector) HostFacts(context.Context) (driver.HostFacts, error) {
	s.r.record("HostFacts")
	return driver.HostFacts{}, nil
}

func (s stubNetworks) Networks(context.Context) ([]driver.NetworkFacts, []string, error) {
	s.r.record("Networks")
	return nil, nil, nil
}

// optional is an optional interface as the services see it: an assertion, and a call through it.
type optional struct {
	name   string
	is     func(x any) bool
	call   func(ctx context.Context, x any)
	method string
}

// Written by hand, independently of the generator's lists.
var (
	storageOptionals = []optional{
		{"VolumeCloner", func(x any) bool { _, ok := x.(driver.VolumeCloner); return ok },
			func(ctx context.Context, x any) {
				_, _ = x.(driver.VolumeCloner).CloneVolume(ctx, driver.PoolSpec{}, driver.VolumeSpec{}, uuid.Nil)
			}, "CloneVolume"},
		{"ObjectReader", func(x any) bool { _, ok := x.(driver.ObjectReader); return ok },
			func(ctx context.Context, x any) {
				_, _ = x.(driver.ObjectReader).OpenObject(ctx, driver.PoolSpec{}, driver.KindVolume, uuid.Nil)
			}, "OpenObject"},
		{"VolumeFiller", func(x any) bool { _, ok := x.(driver.VolumeFiller); return ok },
			func(ctx context.Context, x any) {
				_, _ = x.(driver.VolumeFiller).FillVolume(ctx, driver.PoolSpec{}, driver.VolumeSpec{}, nil, 0, nil)
			}, "FillVolume"},
		{"VolumeLinker", func(x any) bool { _, ok := x.(driver.VolumeLinker); return ok },
			func(ctx context.Context, x any) {
				_, _ = x.(driver.VolumeLinker).LinkVolume(ctx, driver.PoolSpec{}, driver.ObjectRef{}, driver.VolumeSpec{})
			}, "LinkVolume"},
		{"UploadSweeper", func(x any) bool { _, ok := x.(driver.UploadSweeper); return ok },
			func(ctx context.Context, x any) { _ = x.(driver.UploadSweeper).SweepUploads(ctx, driver.PoolSpec{}) }, "SweepUploads"},
		{"Aser", func(x any) bool { _, ok := x.(driver.Aser); return ok },
			func(_ context.Context, x any) { var s string; driver.As(x, &s) }, "As"},
		{"ErrorAser", func(x any) bool { _, ok := x.(driver.ErrorAser); return ok },
			func(_ context.Context, x any) { var s string; driver.ErrorAs(x, errors.New("x"), &s) }, "ErrorAs"},
	}
	hvOptionals = []optional{
		{"StateWatcher", func(x any) bool { _, ok := x.(driver.StateWatcher); return ok },
			func(ctx context.Context, x any) { _, _ = x.(driver.StateWatcher).WatchStates(ctx) }, "WatchStates"},
		{"StateLister", func(x any) bool { _, ok := x.(driver.StateLister); return ok },
			func(ctx context.Context, x any) { _, _ = x.(driver.StateLister).States(ctx) }, "States"},
		{"ConsoleLogger", func(x any) bool { _, ok := x.(driver.ConsoleLogger); return ok },
			func(ctx context.Context, x any) { _, _ = x.(driver.ConsoleLogger).ConsoleLog(ctx, uuid.Nil, 0) }, "ConsoleLog"},
		{"SerialConsoler", func(x any) bool { _, ok := x.(driver.SerialConsoler); return ok },
			func(ctx context.Context, x any) { _, _ = x.(driver.SerialConsoler).OpenSerial(ctx, uuid.Nil) }, "OpenSerial"},
		{"HostInspector", func(x any) bool { _, ok := x.(driver.HostInspector); return ok },
			func(ctx context.Context, x any) { _, _ = x.(driver.HostInspector).HostFacts(ctx) }, "HostFacts"},
		{"NetworkLister", func(x any) bool { _, ok := x.(driver.NetworkLister); return ok },
			func(ctx context.Context, x any) { _, _, _ = x.(driver.NetworkLister).Networks(ctx) }, "Networks"},
		{"Aser", func(x any) bool { _, ok := x.(driver.Aser); return ok },
			func(_ context.Context, x any) { var s string; driver.As(x, &s) }, "As"},
		{"ErrorAser", func(x any) bool { _, ok := x.(driver.ErrorAser); return ok },
			func(_ context.Context, x any) { var s string; driver.ErrorAs(x, errors.New("x"), &s) }, "ErrorAs"},
	}
)

func names(os []optional) []string {
	var out []string
	for _, o := range os {
		out = append(out, o.name)
	}
	return out
}

func testInstruments(t testing.TB) (*Instruments, *prometheus.Registry, *tracetest.SpanRecorder) {
	reg := prometheus.NewRegistry()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	in, err := New(reg, tp)
	require.NoError(t, err)
	return in, reg, sr
}

// TestOptionalInterfacesAreListed: every interface package driver declares, besides the required ones, is
// an optional capability the wrappers know, so a new one cannot be hidden by them unnoticed.
func TestOptionalInterfacesAreListed(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob("../../driver/*.go")
	require.NoError(t, err)
	var declared []string
	for _, f := range files {
		if filepath.Ext(f) != ".go" || len(f) > 8 && f[len(f)-8:] == "_test.go" {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		for _, d := range af.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, s := range gd.Specs {
				ts := s.(*ast.TypeSpec)
				if _, isIface := ts.Type.(*ast.InterfaceType); isIface && ts.Name.IsExported() {
					declared = append(declared, ts.Name.Name)
				}
			}
		}
	}
	required := []string{"StorageBackend", "StorageConfigurer", "Hypervisor", "ObjectFile"}
	var known []string
	known = append(known, required...)
	for _, c := range storageCaps {
		known = append(known, c.iface)
	}
	for _, c := range hvCaps {
		known = append(known, c.iface)
	}
	for _, d := range declared {
		assert.Contains(t, known, d, "package driver declares interface %s: list it in gen_test.go (storageCaps or hvCaps) and regenerate", d)
	}
	// The generator's lists and the hand-written assertions of this file agree.
	var sc, hc []string
	for _, c := range storageCaps {
		sc = append(sc, c.iface)
	}
	for _, c := range hvCaps {
		hc = append(hc, c.iface)
	}
	assert.Equal(t, sc, names(storageOptionals))
	assert.Equal(t, hc, names(hvOptionals))
	assert.Equal(t, sc, storageCapNames)
	assert.Equal(t, hc, hvCapNames)
}

// checkSame asserts that wrapped implements each optional interface exactly when inner does, and that a
// call through wrapped reaches inner (when rec is given).
func checkSame(t *testing.T, opts []optional, inner, wrapped any, rec *recorder) {
	t.Helper()
	for _, o := range opts {
		assert.Equal(t, o.is(inner), o.is(wrapped), "%s: wrapper implements it %v, inner %v", o.name, o.is(wrapped), o.is(inner))
		if rec != nil && o.is(wrapped) {
			before := rec.count(o.method)
			o.call(context.Background(), wrapped)
			assert.Equal(t, before+1, rec.count(o.method), "%s.%s reaches the inner driver", o.name, o.method)
		}
	}
}

// TestWrapperCapabilitiesEveryCombination: for every combination of optional interfaces, the wrapper of a
// driver implementing exactly those implements exactly those too, and forwards each call.
func TestWrapperCapabilitiesEveryCombination(t *testing.T) {
	in, _, _ := testInstruments(t)
	for m := uint(0); m < 1<<len(storageCaps); m++ {
		rec := newRecorder()
		inner := synthStorage(&stubStorage{StorageBackend: fake.NewStorage(1 << 20), recorder: rec}, m)
		require.Equal(t, m, storageCapsOf(inner), "test double of mask %b", m)
		w := in.WrapStorage(inner)
		require.Equal(t, m, storageCapsOf(w), "wrapper of mask %b", m)
		checkSame(t, storageOptionals, inner, w, rec)
		assert.Equal(t, inner, Unwrap(w))
	}
	for m := uint(0); m < 1<<len(hvCaps); m++ {
		rec := newRecorder()
		inner := synthHypervisor(&stubHV{Hypervisor: fake.NewHypervisor(), recorder: rec}, m)
		require.Equal(t, m, hvCapsOf(inner), "test double of mask %b", m)
		w := in.WrapHypervisor(inner)
		require.Equal(t, m, hvCapsOf(w), "wrapper of mask %b", m)
		checkSame(t, hvOptionals, inner, w, rec)
	}
}

// TestWrapperCapabilitiesRealDrivers: over the real drivers, wrapper-implements == inner-implements for
// every optional interface.
func TestWrapperCapabilitiesRealDrivers(t *testing.T) {
	in, _, _ := testInstruments(t)
	dir := t.TempDir()
	lfs, err := localfs.New(driver.Config{DataDir: filepath.Join(dir, "localfs")})
	require.NoError(t, err)
	bfs, err := btrfs.New(driver.Config{DataDir: filepath.Join(dir, "btrfs")})
	require.NoError(t, err)
	nb, err := nfs.New(driver.Config{DataDir: filepath.Join(dir, "nfs")})
	require.NoError(t, err)
	lv, err := libvirt.New(driver.Config{DataDir: filepath.Join(dir, "libvirt"), Options: map[string]string{"uri": "qemu:///session",
		"socket": filepath.Join(dir, "no-such.sock")}})
	require.NoError(t, err)
	storages := map[string]driver.StorageBackend{"localfs": lfs, "btrfs": bfs, "nfs": nb, "fake": fake.NewStorage(1 << 20)}
	for name, b := range storages {
		t.Run(name, func(t *testing.T) {
			w := in.WrapStorage(b)
			checkSame(t, storageOptionals, b, w, nil)
			assert.Equal(t, storageCapsOf(b), storageCapsOf(w))
			assert.Equal(t, b.Info(), w.Info())
			assert.Same(t, b, Unwrap(w))
		})
	}
	hvs := map[string]driver.Hypervisor{"libvirt": lv, "fake": fake.NewHypervisor()}
	for name, h := range hvs {
		t.Run(name, func(t *testing.T) {
			w := in.WrapHypervisor(h)
			checkSame(t, hvOptionals, h, w, nil)
			assert.Equal(t, hvCapsOf(h), hvCapsOf(w))
			assert.Same(t, h, Unwrap(w))
		})
	}
	// What the drivers are known to implement, so that a driver change shows here too.
	want := map[string][]string{
		"localfs": {"VolumeCloner", "ObjectReader", "VolumeFiller", "VolumeLinker", "UploadSweeper"},
		"btrfs":   {"VolumeCloner", "ObjectReader", "VolumeFiller", "VolumeLinker", "UploadSweeper"},
		"nfs":     {"UploadSweeper"},
		"fake":    nil,
	}
	for name, b := range storages {
		var got []string
		for _, o := range storageOptionals {
			if o.is(in.WrapStorage(b)) {
				got = append(got, o.name)
			}
		}
		assert.Equal(t, want[name], got, name)
	}
	var got []string
	for _, o := range hvOptionals {
		if o.is(in.WrapHypervisor(lv)) {
			got = append(got, o.name)
		}
	}
	assert.Equal(t, []string{"StateWatcher", "StateLister", "ConsoleLogger", "SerialConsoler", "HostInspector", "NetworkLister", "Aser", "ErrorAser"}, got)
	require.NoError(t, lv.Close())
}

// TestWrapNil: no instruments, no wrapper; wrapping twice wraps once.
func TestWrapNil(t *testing.T) {
	var in *Instruments
	b := fake.NewStorage(1 << 20)
	h := fake.NewHypervisor()
	assert.Same(t, b, in.WrapStorage(b))
	assert.Same(t, h, in.WrapHypervisor(h))
	off, err := New(nil, nil)
	require.NoError(t, err)
	assert.Nil(t, off)

	on, _, _ := testInstruments(t)
	w := on.WrapStorage(b)
	assert.Equal(t, w, on.WrapStorage(w), "a wrapper is not wrapped again")
}

// TestDriverCallsMeasured: calls are counted by outcome, timed, and traced as children of the caller's
// span with the request id.
func TestDriverCallsMeasured(t *testing.T) {
	in, reg, sr := testInstruments(t)
	f := fake.NewHypervisor()
	h := in.WrapHypervisor(f)
	ctx := reqctx.WithMeta(context.Background(), reqctx.Meta{RequestID: "req-1"})
	ctx, parent := in.Tracer().Start(ctx, "parent")
	id := uuid.New()
	require.NoError(t, h.Define(ctx, driver.DomainSpec{ID: id, Name: "a"}))
	require.NoError(t, h.Start(ctx, id))
	err := h.Start(ctx, uuid.New())
	require.ErrorIs(t, err, driver.ErrNotFound, "errors come back as the driver returned them")
	_, err = h.(driver.StateLister).States(ctx)
	require.NoError(t, err)
	parent.End()

	count := func(method, outcome string) float64 {
		return testutil.ToFloat64(in.driverCalls.WithLabelValues(KindHypervisor, "fake", method, outcome))
	}
	assert.Equal(t, 1.0, count("Define", "ok"))
	assert.Equal(t, 1.0, count("Start", "ok"))
	assert.Equal(t, 1.0, count("Start", "not_found"))
	assert.Equal(t, 1.0, count("States", "ok"))
	n, err := testutil.GatherAndCount(reg, "openvair_driver_call_duration_seconds")
	require.NoError(t, err)
	assert.Positive(t, n)

	spans := sr.Ended()
	var driverSpans int
	for _, s := range spans {
		if s.Name() == "parent" {
			continue
		}
		driverSpans++
		assert.Equal(t, parent.SpanContext().TraceID(), s.SpanContext().TraceID(), s.Name())
		assert.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID(), s.Name())
		assert.Contains(t, s.Attributes(), AttrRequestID.String("req-1"), s.Name())
	}
	assert.Equal(t, 4, driverSpans)
	assert.True(t, slices.ContainsFunc(spans, func(s sdktrace.ReadOnlySpan) bool { return s.Name() == "fake.Start" }))
}

func TestOutcome(t *testing.T) {
	ctx := context.Background()
	assert.Equal(t, "ok", Outcome(ctx, nil))
	assert.Equal(t, "in_use", Outcome(ctx, errkind.New(errkind.InUse, "volume", "", "busy")))
	assert.Equal(t, "timeout", Outcome(ctx, context.DeadlineExceeded))
	assert.Equal(t, "canceled", Outcome(ctx, context.Canceled))
	assert.Equal(t, "error", Outcome(ctx, errors.New("boom")))
}
