package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// escapeByte is Ctrl-], which detaches from a console.
const escapeByte = 0x1d

// eofLinger is how long a console whose input ended (not a terminal) still shows the guest's output.
const eofLinger = 2 * time.Second

func (a *App) vmConsoleCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "console VM",
		Short: "Attach the terminal to a running VM's serial console (Ctrl-] detaches)",
		Long: `Attach to a running VM's first serial console: what the guest prints appears here and what you type
goes to the guest. When standard input is a terminal it is put in raw mode; press Ctrl-] to detach. When it
is not a terminal (a pipe), its content is sent and the output is shown until shortly after it ends. One
client at a time may hold a VM's console.`,
		Args: cobra.ExactArgs(1), ValidArgsFunction: a.complete(kindVM, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.longCtx(cmd)
			defer cancel()
			rctx, rcancel := a.callCtx(cmd)
			id, err := resolveArg(rctx, c, kindVM, args[0])
			rcancel()
			if err != nil {
				return err
			}
			conn, err := c.SerialConsole(ctx, id)
			if err != nil {
				return err
			}
			defer conn.Close()
			return a.attach(ctx, conn, args[0])
		},
	}
}

// attach copies between the console and the terminal until the console closes, the user detaches, or ctx
// ends.
func (a *App) attach(ctx context.Context, conn io.ReadWriteCloser, name string) error {
	in, _ := a.In.(*os.File)
	raw := in != nil && term.IsTerminal(int(in.Fd()))
	nl := "\n"
	if raw {
		old, err := term.MakeRaw(int(in.Fd()))
		if err != nil {
			return fmt.Errorf("console: raw mode: %w", err)
		}
		defer func() { _ = term.Restore(int(in.Fd()), old) }()
		nl = "\r\n"
	}
	fmt.Fprintf(a.Err, "Connected to the serial console of %s (Ctrl-] to detach)%s", name, nl)

	outDone := make(chan error, 1)
	go func() {
		_, err := io.Copy(a.Out, conn)
		outDone <- err
	}()
	inDone := make(chan error, 1)
	go func() { inDone <- copyUntilEscape(conn, a.In, raw) }()

	select {
	case err := <-outDone:
		fmt.Fprintf(a.Err, "%sConsole closed%s", nl, nl)
		if err != nil && !errors.Is(err, io.EOF) && ctx.Err() == nil {
			return fmt.Errorf("console: %w", err)
		}
		return nil
	case err := <-inDone:
		if errors.Is(err, errDetached) {
			fmt.Fprintf(a.Err, "%sDetached%s", nl, nl)
			return nil
		}
		// Input ended: show what the guest still prints for a moment.
		select {
		case <-outDone:
		case <-time.After(eofLinger):
		case <-ctx.Done():
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errDetached is returned by copyUntilEscape when the user typed the escape byte.
var errDetached = errors.New("detached")

// copyUntilEscape copies src to dst; in raw mode the escape byte ends it (the bytes before it are sent).
func copyUntilEscape(dst io.Writer, src io.Reader, raw bool) error {
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			i := bytes.IndexByte(chunk, escapeByte)
			if raw && i >= 0 {
				chunk = chunk[:i]
			}
			if len(chunk) > 0 {
				if _, werr := dst.Write(chunk); werr != nil {
					return werr
				}
			}
			if raw && i >= 0 {
				return errDetached
			}
		}
		if err != nil {
			return err
		}
	}
}
