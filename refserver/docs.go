package refserver

import (
	_ "embed"
	"net/http"
)

// docsHTML is the API docs page: self-contained (no CDN, no external asset), it renders the operations
// and schemas of openapi.json with plain JavaScript, so it works on a machine without Internet access.
//
//go:embed assets/docs.html
var docsHTML []byte

// registerDocs serves the docs page at /docs and redirects / to it.
func registerDocs(mux *http.ServeMux) {
	mux.HandleFunc("GET /docs", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(docsHTML)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "docs", http.StatusFound)
	})
}
