package telemetry

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/openvair/openvair/driver"
)

// The seam. A storage backend or a hypervisor is wrapped once, where openvair.Open obtains it; every
// call the services make then goes through the wrapper, which counts it, times it and traces it.
//
// Services discover optional capabilities by type assertion (b.(driver.VolumeCloner), hv.(driver.
// StateWatcher)) and take another path when an assertion fails, so a wrapper must answer every such
// assertion as its inner driver does: neither hide a capability nor claim one. A Go type's method set is
// fixed, so the wrapper's type is chosen at construction among one type per combination of optional
// interfaces: an anonymous struct that embeds the base wrapper (*storageWrap, *hvWrap, which implement
// exactly the required interface) and one small forwarding type per optional interface the inner driver
// implements (volumeCloner, stateWatcher, ...). The combinations (2^7 for storages, 2^8 for hypervisors)
// are generated into wrap_gen.go from the lists in gen_test.go, with the capability masks; wrap_test.go
// checks, for every combination and for every real driver, that the wrapper implements an optional
// interface exactly when the inner driver does, and that each call reaches the inner driver.

// Driver kinds, the "kind" label of driver metrics.
const (
	KindStorage    = "storage"
	KindHypervisor = "hypervisor"
)

// Unwrapper is implemented by the wrappers: Unwrap returns the driver they wrap.
type Unwrapper interface {
	Unwrap() any
}

// Unwrap returns the driver x wraps when it is a wrapper of this package, else x.
func Unwrap(x any) any {
	if u, ok := x.(Unwrapper); ok {
		return u.Unwrap()
	}
	return x
}

// methodObs is what one method of one wrapped driver records: pre-resolved series, so that a call costs
// no label lookup when it succeeds.
type methodObs struct {
	name string
	span string // "<driver>.<Method>"
	ok   prometheus.Counter
	dur  prometheus.Observer
}

// probe measures the calls of one wrapped driver.
type probe struct {
	in      *Instruments
	kind    string
	driver  string
	methods []methodObs
	attrs   []attribute.KeyValue // of every span
	off     bool                 // neither metrics nor tracing: calls go straight through
}

func newProbe(in *Instruments, kind, name string, methods []string) *probe {
	p := &probe{in: in, kind: kind, driver: name, methods: make([]methodObs, len(methods)),
		attrs: []attribute.KeyValue{AttrDriverKind.String(kind), AttrDriver.String(name)},
		off:   in.tracer == nil && in.driverCalls == nil}
	for i, m := range methods {
		o := methodObs{name: m, span: name + "." + m}
		if in.driverCalls != nil {
			o.ok = in.driverCalls.WithLabelValues(kind, name, m, OutcomeOK)
			o.dur = in.driverDuration.WithLabelValues(kind, name, m)
		}
		p.methods[i] = o
	}
	return p
}

// call is one driver call being measured.
type call struct {
	p      *probe
	m      int
	start  time.Duration // since epoch, monotonic; 0 when metrics are off
	traced bool          // the call's context carries its span
}

// epoch is the origin of call start times.
var epoch = time.Now()

// begin starts measuring a call of method m under ctx; the call runs under the returned context (its span's).
// With metrics and tracing off it inlines to a test.
func (p *probe) begin(ctx context.Context, m int) (context.Context, call) {
	if p.off {
		return ctx, call{}
	}
	return p.measure(ctx, m)
}

// measure is begin when something is on.
func (p *probe) measure(ctx context.Context, m int) (context.Context, call) {
	c := call{p: p, m: m}
	if p.in.tracer != nil {
		ctx, c.traced = p.startSpan(ctx, m), true
	}
	if p.in.driverCalls != nil {
		c.start = time.Since(epoch)
	}
	return ctx, c
}

// startSpan starts the span of a call of method m and returns ctx carrying it.
func (p *probe) startSpan(ctx context.Context, m int) context.Context {
	attrs := make([]attribute.KeyValue, 0, len(p.attrs)+2)
	attrs = append(attrs, p.attrs...)
	attrs = append(attrs, AttrMethod.String(p.methods[m].name))
	if a, ok := requestAttr(ctx); ok {
		attrs = append(attrs, a)
	}
	ctx, _ = p.in.tracer.Start(ctx, p.methods[m].span, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return ctx
}

// untraced starts measuring a call of method m that takes no context (Close): counted and timed only.
func (p *probe) untraced(m int) call {
	if p.off {
		return call{}
	}
	c := call{p: p, m: m}
	if p.in.driverCalls != nil {
		c.start = time.Since(epoch)
	}
	return c
}

// end records the outcome of the call, made under ctx.
func (c call) end(ctx context.Context, err error) {
	if c.p != nil {
		c.record(ctx, err)
	}
}

// record is end when something is on.
func (c call) record(ctx context.Context, err error) {
	if c.start != 0 {
		o := &c.p.methods[c.m]
		o.dur.Observe((time.Since(epoch) - c.start).Seconds())
		if err == nil {
			o.ok.Inc()
		} else {
			c.p.in.driverCalls.WithLabelValues(c.p.kind, c.p.driver, o.name, outcomeOf(ctx, err)).Inc()
		}
	}
	if c.traced {
		endSpan(ctx, trace.SpanFromContext(ctx), err)
	}
}

// endSpan ends the span of a call that returned err.
func endSpan(ctx context.Context, span trace.Span, err error) {
	if err != nil {
		span.SetAttributes(AttrOutcome.String(outcomeOf(ctx, err)))
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

func outcomeOf(ctx context.Context, err error) string { return Outcome(ctx, err) }

// Storage backend methods, indexes into storageMethods.
const (
	smCheckConfig = iota
	smPrepare
	smTeardown
	smStatus
	smCreateVolume
	smExtendVolume
	smDeleteVolume
	smInspectVolume
	smWriteImage
	smDeleteImage
	smInspectImage
	smClose
	smCloneVolume
	smOpenObject
	smFillVolume
	smLinkVolume
	smSweepUploads
)

// storageMethods are the measured methods of storage backends. Info, ConfigSchema and DiskSource (which
// do no I/O and take no context), As and ErrorAs are passed through unmeasured.
var storageMethods = []string{"CheckConfig", "Prepare", "Teardown", "Status", "CreateVolume", "ExtendVolume",
	"DeleteVolume", "InspectVolume", "WriteImage", "DeleteImage", "InspectImage", "Close", "CloneVolume",
	"OpenObject", "FillVolume", "LinkVolume", "SweepUploads"}

// WrapStorage returns b measured by in: every call counted by outcome, timed and traced. The result
// implements exactly the optional interfaces b implements. A nil in returns b itself.
func (in *Instruments) WrapStorage(b driver.StorageBackend) driver.StorageBackend {
	if in == nil || b == nil {
		return b
	}
	if _, wrapped := b.(Unwrapper); wrapped {
		return b
	}
	name := b.Info().Name
	if name == "" {
		name = "unnamed"
	}
	w := &storageWrap{inner: b, p: newProbe(in, KindStorage, name, storageMethods)}
	w.cloner, _ = b.(driver.VolumeCloner)
	w.reader, _ = b.(driver.ObjectReader)
	w.filler, _ = b.(driver.VolumeFiller)
	w.linker, _ = b.(driver.VolumeLinker)
	w.sweeper, _ = b.(driver.UploadSweeper)
	w.aser, _ = b.(driver.Aser)
	w.errorAser, _ = b.(driver.ErrorAser)
	return composeStorage(w, storageCapsOf(b))
}

// storageWrap measures the required methods of a storage backend; it implements no optional interface
// itself (see composeStorage).
type storageWrap struct {
	inner driver.StorageBackend
	p     *probe

	cloner    driver.VolumeCloner
	reader    driver.ObjectReader
	filler    driver.VolumeFiller
	linker    driver.VolumeLinker
	sweeper   driver.UploadSweeper
	aser      driver.Aser
	errorAser driver.ErrorAser
}

// Unwrap returns the wrapped backend.
func (w *storageWrap) Unwrap() any { return w.inner }

// Info implements driver.StorageBackend.
func (w *storageWrap) Info() driver.StorageInfo { return w.inner.Info() }

// ConfigSchema implements driver.StorageConfigurer.
func (w *storageWrap) ConfigSchema() json.RawMessage { return w.inner.ConfigSchema() }

// CheckConfig implements driver.StorageConfigurer.
func (w *storageWrap) CheckConfig(ctx context.Context, config json.RawMessage) (driver.CheckedConfig, error) {
	return observeValue(ctx, w.p, smCheckConfig, func(ctx context.Context) (driver.CheckedConfig, error) { return w.inner.CheckConfig(ctx, config) })
}

// Prepare implements driver.StorageBackend.
func (w *storageWrap) Prepare(ctx context.Context, pool driver.PoolSpec) (driver.PoolState, error) {
	return observeValue(ctx, w.p, smPrepare, func(ctx context.Context) (driver.PoolState, error) { return w.inner.Prepare(ctx, pool) })
}

// Teardown implements driver.StorageBackend.
func (w *storageWrap) Teardown(ctx context.Context, pool driver.PoolSpec) error {
	return observe(ctx, w.p, smTeardown, func(ctx context.Context) error { return w.inner.Teardown(ctx, pool) })
}

// Status implements driver.StorageBackend.
func (w *storageWrap) Status(ctx context.Context, pool driver.PoolSpec) (driver.PoolState, error) {
	return observeValue(ctx, w.p, smStatus, func(ctx context.Context) (driver.PoolState, error) { return w.inner.Status(ctx, pool) })
}

// CreateVolume implements driver.StorageBackend.
func (w *storageWrap) CreateVolume(ctx context.Context, pool driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	return observeValue(ctx, w.p, smCreateVolume, func(ctx context.Context) (driver.VolumeInfo, error) { return w.inner.CreateVolume(ctx, pool, vol) })
}

// ExtendVolume implements driver.StorageBackend.
func (w *storageWrap) ExtendVolume(ctx context.Context, pool driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	return observeValue(ctx, w.p, smExtendVolume, func(ctx context.Context) (driver.VolumeInfo, error) { return w.inner.ExtendVolume(ctx, pool, vol) })
}

// DeleteVolume implements driver.StorageBackend.
func (w *storageWrap) DeleteVolume(ctx context.Context, pool driver.PoolSpec, id uuid.UUID) error {
	return observe(ctx, w.p, smDeleteVolume, func(ctx context.Context) error { return w.inner.DeleteVolume(ctx, pool, id) })
}

// InspectVolume implements driver.StorageBackend.
func (w *storageWrap) InspectVolume(ctx context.Context, pool driver.PoolSpec, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	return observeValue(ctx, w.p, smInspectVolume, func(ctx context.Context) (driver.VolumeInfo, error) { return w.inner.InspectVolume(ctx, pool, vol) })
}

// WriteImage implements driver.StorageBackend.
func (w *storageWrap) WriteImage(ctx context.Context, pool driver.PoolSpec, img driver.ImageWrite, r io.Reader) (driver.ImageInfo, error) {
	return observeValue(ctx, w.p, smWriteImage, func(ctx context.Context) (driver.ImageInfo, error) { return w.inner.WriteImage(ctx, pool, img, r) })
}

// DeleteImage implements driver.StorageBackend.
func (w *storageWrap) DeleteImage(ctx context.Context, pool driver.PoolSpec, id uuid.UUID) error {
	return observe(ctx, w.p, smDeleteImage, func(ctx context.Context) error { return w.inner.DeleteImage(ctx, pool, id) })
}

// InspectImage implements driver.StorageBackend.
func (w *storageWrap) InspectImage(ctx context.Context, pool driver.PoolSpec, id uuid.UUID) (driver.ImageInfo, error) {
	return observeValue(ctx, w.p, smInspectImage, func(ctx context.Context) (driver.ImageInfo, error) { return w.inner.InspectImage(ctx, pool, id) })
}

// DiskSource implements driver.StorageBackend.
func (w *storageWrap) DiskSource(pool driver.PoolSpec, kind driver.ObjectKind, id uuid.UUID) driver.DiskSource {
	return w.inner.DiskSource(pool, kind, id)
}

// observe runs fn as call m of p's driver: counted, timed and, when tracing, in a span of its own.
func observe(ctx context.Context, p *probe, m int, fn func(context.Context) error) error {
	ctx, c := p.begin(ctx, m)
	err := fn(ctx)
	c.end(ctx, err)
	return err
}

// observeValue is observe for a call with a result.
func observeValue[T any](ctx context.Context, p *probe, m int, fn func(context.Context) (T, error)) (T, error) {
	ctx, c := p.begin(ctx, m)
	out, err := fn(ctx)
	c.end(ctx, err)
	return out, err
}

// Close implements driver.StorageBackend (counted, not traced: it has no context).
func (w *storageWrap) Close() error {
	c := w.p.untraced(smClose)
	err := w.inner.Close()
	c.end(context.Background(), err)
	return err
}

// volumeCloner forwards driver.VolumeCloner.
type volumeCloner struct{ w *storageWrap }

// CloneVolume implements driver.VolumeCloner.
func (x volumeCloner) CloneVolume(ctx context.Context, pool driver.PoolSpec, src driver.VolumeSpec, dst uuid.UUID) (driver.VolumeInfo, error) {
	return observeValue(ctx, x.w.p, smCloneVolume, func(ctx context.Context) (driver.VolumeInfo, error) {
		return x.w.cloner.CloneVolume(ctx, pool, src, dst)
	})
}

// objectReader forwards driver.ObjectReader.
type objectReader struct{ w *storageWrap }

// OpenObject implements driver.ObjectReader (the opening is measured, not the reads).
func (x objectReader) OpenObject(ctx context.Context, pool driver.PoolSpec, kind driver.ObjectKind, id uuid.UUID) (driver.ObjectFile, error) {
	return observeValue(ctx, x.w.p, smOpenObject, func(ctx context.Context) (driver.ObjectFile, error) {
		return x.w.reader.OpenObject(ctx, pool, kind, id)
	})
}

// volumeFiller forwards driver.VolumeFiller.
type volumeFiller struct{ w *storageWrap }

// FillVolume implements driver.VolumeFiller.
func (x volumeFiller) FillVolume(ctx context.Context, pool driver.PoolSpec, vol driver.VolumeSpec, src io.ReaderAt, srcSize int64,
	progress func(done int64)) (driver.VolumeInfo, error) {
	return observeValue(ctx, x.w.p, smFillVolume, func(ctx context.Context) (driver.VolumeInfo, error) {
		return x.w.filler.FillVolume(ctx, pool, vol, src, srcSize, progress)
	})
}

// volumeLinker forwards driver.VolumeLinker.
type volumeLinker struct{ w *storageWrap }

// LinkVolume implements driver.VolumeLinker.
func (x volumeLinker) LinkVolume(ctx context.Context, pool driver.PoolSpec, base driver.ObjectRef, vol driver.VolumeSpec) (driver.VolumeInfo, error) {
	return observeValue(ctx, x.w.p, smLinkVolume, func(ctx context.Context) (driver.VolumeInfo, error) {
		return x.w.linker.LinkVolume(ctx, pool, base, vol)
	})
}

// uploadSweeper forwards driver.UploadSweeper.
type uploadSweeper struct{ w *storageWrap }

// SweepUploads implements driver.UploadSweeper.
func (x uploadSweeper) SweepUploads(ctx context.Context, pool driver.PoolSpec) error {
	return observe(ctx, x.w.p, smSweepUploads, func(ctx context.Context) error { return x.w.sweeper.SweepUploads(ctx, pool) })
}

// aser forwards driver.Aser, unmeasured: the wrapper hands out what the inner driver is built on.
type aser struct{ a driver.Aser }

// As implements driver.Aser.
func (x aser) As(target any) bool { return x.a.As(target) }

// errorAser forwards driver.ErrorAser: the wrapper returns the inner driver's errors as they are.
type errorAser struct{ a driver.ErrorAser }

// ErrorAs implements driver.ErrorAser.
func (x errorAser) ErrorAs(err error, target any) bool { return x.a.ErrorAs(err, target) }

// Hypervisor methods, indexes into hvMethods.
const (
	hmDefine = iota
	hmUndefine
	hmStart
	hmShutdown
	hmDestroy
	hmReboot
	hmReset
	hmState
	hmConsole
	hmClose
	hmWatchStates
	hmStates
	hmConsoleLog
	hmOpenSerial
	hmHostFacts
	hmNetworks
)

// hvMethods are the measured methods of hypervisors. Info, As and ErrorAs are passed through unmeasured.
var hvMethods = []string{"Define", "Undefine", "Start", "Shutdown", "Destroy", "Reboot", "Reset", "State",
	"Console", "Close", "WatchStates", "States", "ConsoleLog", "OpenSerial", "HostFacts", "Networks"}

// WrapHypervisor returns h measured by in: every call counted by outcome, timed and traced. The result
// implements exactly the optional interfaces h implements. A nil in returns h itself.
func (in *Instruments) WrapHypervisor(h driver.Hypervisor) driver.Hypervisor {
	if in == nil || h == nil {
		return h
	}
	if _, wrapped := h.(Unwrapper); wrapped {
		return h
	}
	name := h.Info().Name
	if name == "" {
		name = "unnamed"
	}
	w := &hvWrap{inner: h, p: newProbe(in, KindHypervisor, name, hvMethods)}
	w.watcher, _ = h.(driver.StateWatcher)
	w.lister, _ = h.(driver.StateLister)
	w.logger, _ = h.(driver.ConsoleLogger)
	w.serial, _ = h.(driver.SerialConsoler)
	w.inspector, _ = h.(driver.HostInspector)
	w.networks, _ = h.(driver.NetworkLister)
	w.aser, _ = h.(driver.Aser)
	w.errorAser, _ = h.(driver.ErrorAser)
	return composeHypervisor(w, hvCapsOf(h))
}

// hvWrap measures the required methods of a hypervisor; it implements no optional interface itself (see
// composeHypervisor).
type hvWrap struct {
	inner driver.Hypervisor
	p     *probe

	watcher   driver.StateWatcher
	lister    driver.StateLister
	logger    driver.ConsoleLogger
	serial    driver.SerialConsoler
	inspector driver.HostInspector
	networks  driver.NetworkLister
	aser      driver.Aser
	errorAser driver.ErrorAser
}

// Unwrap returns the wrapped hypervisor.
func (w *hvWrap) Unwrap() any { return w.inner }

// Info implements driver.Hypervisor.
func (w *hvWrap) Info() driver.HypervisorInfo { return w.inner.Info() }

// Define implements driver.Hypervisor.
func (w *hvWrap) Define(ctx context.Context, spec driver.DomainSpec) error {
	return observe(ctx, w.p, hmDefine, func(ctx context.Context) error { return w.inner.Define(ctx, spec) })
}

// Undefine implements driver.Hypervisor.
func (w *hvWrap) Undefine(ctx context.Context, id uuid.UUID) error {
	return observe(ctx, w.p, hmUndefine, func(ctx context.Context) error { return w.inner.Undefine(ctx, id) })
}

// Start implements driver.Hypervisor.
func (w *hvWrap) Start(ctx context.Context, id uuid.UUID) error {
	return observe(ctx, w.p, hmStart, func(ctx context.Context) error { return w.inner.Start(ctx, id) })
}

// Shutdown implements driver.Hypervisor.
func (w *hvWrap) Shutdown(ctx context.Context, id uuid.UUID) error {
	return observe(ctx, w.p, hmShutdown, func(ctx context.Context) error { return w.inner.Shutdown(ctx, id) })
}

// Destroy implements driver.Hypervisor.
func (w *hvWrap) Destroy(ctx context.Context, id uuid.UUID) error {
	return observe(ctx, w.p, hmDestroy, func(ctx context.Context) error { return w.inner.Destroy(ctx, id) })
}

// Reboot implements driver.Hypervisor.
func (w *hvWrap) Reboot(ctx context.Context, id uuid.UUID) error {
	return observe(ctx, w.p, hmReboot, func(ctx context.Context) error { return w.inner.Reboot(ctx, id) })
}

// Reset implements driver.Hypervisor.
func (w *hvWrap) Reset(ctx context.Context, id uuid.UUID) error {
	return observe(ctx, w.p, hmReset, func(ctx context.Context) error { return w.inner.Reset(ctx, id) })
}

// State implements driver.Hypervisor.
func (w *hvWrap) State(ctx context.Context, id uuid.UUID) (driver.DomainState, error) {
	return observeValue(ctx, w.p, hmState, func(ctx context.Context) (driver.DomainState, error) { return w.inner.State(ctx, id) })
}

// Console implements driver.Hypervisor.
func (w *hvWrap) Console(ctx context.Context, id uuid.UUID) (driver.Console, error) {
	return observeValue(ctx, w.p, hmConsole, func(ctx context.Context) (driver.Console, error) { return w.inner.Console(ctx, id) })
}

// Close implements driver.Hypervisor (counted, not traced: it has no context).
func (w *hvWrap) Close() error {
	c := w.p.untraced(hmClose)
	err := w.inner.Close()
	c.end(context.Background(), err)
	return err
}

// stateWatcher forwards driver.StateWatcher.
type stateWatcher struct{ w *hvWrap }

// WatchStates implements driver.StateWatcher (the subscription is measured, not the events).
func (x stateWatcher) WatchStates(ctx context.Context) (<-chan driver.StateEvent, error) {
	return observeValue(ctx, x.w.p, hmWatchStates, func(ctx context.Context) (<-chan driver.StateEvent, error) { return x.w.watcher.WatchStates(ctx) })
}

// stateLister forwards driver.StateLister.
type stateLister struct{ w *hvWrap }

// States implements driver.StateLister.
func (x stateLister) States(ctx context.Context) (map[uuid.UUID]driver.DomainState, error) {
	return observeValue(ctx, x.w.p, hmStates, func(ctx context.Context) (map[uuid.UUID]driver.DomainState, error) { return x.w.lister.States(ctx) })
}

// consoleLogger forwards driver.ConsoleLogger.
type consoleLogger struct{ w *hvWrap }

// ConsoleLog implements driver.ConsoleLogger.
func (x consoleLogger) ConsoleLog(ctx context.Context, id uuid.UUID, max int64) ([]byte, error) {
	return observeValue(ctx, x.w.p, hmConsoleLog, func(ctx context.Context) ([]byte, error) { return x.w.logger.ConsoleLog(ctx, id, max) })
}

// serialConsoler forwards driver.SerialConsoler.
type serialConsoler struct{ w *hvWrap }

// OpenSerial implements driver.SerialConsoler (the connection is measured, not the session).
func (x serialConsoler) OpenSerial(ctx context.Context, id uuid.UUID) (io.ReadWriteCloser, error) {
	return observeValue(ctx, x.w.p, hmOpenSerial, func(ctx context.Context) (io.ReadWriteCloser, error) { return x.w.serial.OpenSerial(ctx, id) })
}

// hostInspector forwards driver.HostInspector.
type hostInspector struct{ w *hvWrap }

// HostFacts implements driver.HostInspector.
func (x hostInspector) HostFacts(ctx context.Context) (driver.HostFacts, error) {
	return observeValue(ctx, x.w.p, hmHostFacts, func(ctx context.Context) (driver.HostFacts, error) { return x.w.inspector.HostFacts(ctx) })
}

// networkLister forwards driver.NetworkLister.
type networkLister struct{ w *hvWrap }

// Networks implements driver.NetworkLister.
func (x networkLister) Networks(ctx context.Context) ([]driver.NetworkFacts, []string, error) {
	ctx, c := x.w.p.begin(ctx, hmNetworks)
	nets, bridges, err := x.w.networks.Networks(ctx)
	c.end(ctx, err)
	return nets, bridges, err
}
