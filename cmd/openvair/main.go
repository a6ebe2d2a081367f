// Command openvair is the command line client of an openvair server: storages, volumes, images and VMs,
// their operations and events, with remotes kept in $XDG_CONFIG_HOME/openvair/config.yaml. Run
// 'openvair --help' for the commands and the exit codes.
package main

import (
	"os"

	"github.com/openvair/openvair/cmd/openvair/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
