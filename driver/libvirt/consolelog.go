package libvirt

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"

	"github.com/google/uuid"
	"github.com/openvair/openvair/driver"
	"github.com/openvair/openvair/internal/errkind"
)

// ConsoleLog returns at most max bytes from the end of the domain's serial console log (all of it when
// max <= 0). libvirt appends to the log across boots; the driver reads it from Options.ConsoleLogDir on
// this host. It fails with driver.ErrUnsupported when no log directory is configured and with
// driver.ErrNotFound when the domain has not written a log yet.
func (d *Driver) ConsoleLog(ctx context.Context, id uuid.UUID, max int64) ([]byte, error) {
	if d.opts.ConsoleLogDir == "" {
		return nil, errkind.New(driver.ErrUnsupported, entity, id.String(),
			"no console log directory is configured (option console_log_dir; the default is only for qemu:///system)")
	}
	if err := ctx.Err(); err != nil {
		return nil, ctxError(ctx, id.String(), "console log")
	}
	f, err := os.Open(ConsoleLogPath(d.opts.ConsoleLogDir, id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errkind.New(driver.ErrNotFound, entity, id.String(), "no console log yet (the VM has not run)")
	}
	if err != nil {
		return nil, errkind.Wrap(driver.ErrUnavailable, err, entity, id.String(), "open console log")
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, errkind.Wrap(driver.ErrUnavailable, err, entity, id.String(), "stat console log")
	}
	off := int64(0)
	if max > 0 && st.Size() > max {
		off = st.Size() - max
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return nil, errkind.Wrap(driver.ErrUnavailable, err, entity, id.String(), "read console log")
	}
	return b, nil
}

// removeConsoleLog deletes the console log of an undefined domain; a missing log is fine.
func (d *Driver) removeConsoleLog(id uuid.UUID) {
	if d.opts.ConsoleLogDir != "" {
		_ = os.Remove(ConsoleLogPath(d.opts.ConsoleLogDir, id))
	}
}
