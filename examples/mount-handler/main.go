// Command mount-handler shows the reference server's http.Handler mounted inside another program's mux,
// under /openvair/, next to the program's own routes. It serves until interrupted:
//
//	go run ./examples/mount-handler -listen 127.0.0.1:8090
//	curl -H "Authorization: Bearer $(cat /tmp/openvair-mount/admin.token)" http://127.0.0.1:8090/openvair/api/v1/storages
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/openvair/openvair"
	_ "github.com/openvair/openvair/driver/localfs" // registers the "localfs" storage backend
	_ "github.com/openvair/openvair/driver/nfs"     // registers the "nfs" storage backend
	"github.com/openvair/openvair/refserver"
	_ "github.com/openvair/openvair/repo/sql" // registers the "sqlite:" and "postgres:" stores
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "address to listen on")
	dataDir := flag.String("data-dir", filepath.Join(os.TempDir(), "openvair-mount"), "data directory")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *dataDir); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, listen, dataDir string) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	dataDir, _ = filepath.Abs(dataDir)
	sys, err := openvair.Open(ctx, openvair.Config{DSN: "sqlite://" + filepath.Join(dataDir, "openvair.db"), DataDir: dataDir})
	if err != nil {
		return err
	}
	defer sys.Close()
	go func() { _ = sys.Run(ctx) }()

	// One admin token, written 0600 next to the database; only its hash is given to the server.
	token, err := refserver.GenerateToken()
	if err != nil {
		return err
	}
	tokenFile := filepath.Join(dataDir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		return err
	}
	tokens, err := refserver.NewTokens(refserver.Token{Name: "admin", Role: refserver.RoleAdmin, SHA256: refserver.HashToken(token)})
	if err != nil {
		return err
	}
	api, err := refserver.New(sys, refserver.Config{Tokens: tokens, BasePath: "/openvair", Logger: slog.Default()})
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("/openvair/", http.StripPrefix("/openvair", api))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "my application; the openvair API is under /openvair/ (docs: /openvair/docs)")
	})

	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	slog.Info("serving", "addr", listen, "api", "/openvair/api/v1", "token_file", tokenFile)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
