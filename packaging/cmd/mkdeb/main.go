// Command mkdeb builds the Debian package of openvair-server from a built binary:
//
//	go build -o /tmp/openvair-server ./refserver/cmd/openvair-server
//	cd packaging && go run ./cmd/mkdeb -binary /tmp/openvair-server -version 1.0.0 -out /tmp
//
// It prints the path of openvair-server_<version>_<arch>.deb. See package packaging for its contents.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/openvair/openvair/packaging"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintln(os.Stderr, "mkdeb:", err)
		}
		os.Exit(2)
	}
}

// run parses the flags, builds the package and prints its path on stdout.
func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkdeb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opt packaging.Options
	fs.StringVar(&opt.Binary, "binary", "", "path of the built openvair-server (required)")
	fs.StringVar(&opt.Version, "version", "", "package version, a semantic version such as 1.2.0 or 1.2.0-rc1 (required)")
	fs.StringVar(&opt.Arch, "arch", "amd64", "Debian architecture of the binary")
	fs.StringVar(&opt.OutDir, "out", ".", "directory to write the .deb to")
	fs.StringVar(&opt.Maintainer, "maintainer", "", "Maintainer field (default: the openvair developers)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	path, err := packaging.BuildDeb(opt)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, path)
	return err
}
