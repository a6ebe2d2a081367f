package refserver

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// novncFiles are the console page and noVNC (@novnc/novnc 1.7.0, MPL-2.0; see assets/novnc/VENDORED.md),
// served at /console/ with nothing fetched from elsewhere.
//
//go:embed assets/novnc
var novncFiles embed.FS

// consolePageCSP is the Content-Security-Policy of the console page and its files: scripts, styles and
// connections (the console WebSocket) from this server only, no inline script or style, cursor images as
// data: URLs (noVNC draws the remote cursor that way), no framing.
const consolePageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// consoleAsset is one embedded file with its entity tag.
type consoleAsset struct {
	data []byte
	etag string
	ct   string
}

// consoleAssets are the files under assets/novnc, by their path below /console/.
var consoleAssets = loadConsoleAssets()

func loadConsoleAssets() map[string]consoleAsset {
	root, err := fs.Sub(novncFiles, "assets/novnc")
	if err != nil {
		panic(err)
	}
	out := map[string]consoleAsset{}
	err = fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		switch path.Ext(p) {
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".md", ".txt", "":
			ct = "text/plain; charset=utf-8"
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		out[p] = consoleAsset{data: b, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ct: ct}
		return nil
	})
	if err != nil {
		panic(err)
	}
	return out
}

// registerConsolePage serves the noVNC console page at /console/ (open it as /console/?vm=<id>&ticket=<t>)
// and its files below it. The page and its files need no token: the ticket in the page's URL opens the
// console.
func registerConsolePage(mux *http.ServeMux) {
	mux.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		target := "console/"
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		// A relative Location, as given: the page stays under the prefix the handler may be mounted at.
		w.Header().Set("Location", target)
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.WriteHeader(http.StatusFound)
	})
	mux.HandleFunc("GET /console/", serveConsoleAsset)
}

// serveConsoleAsset answers /console/ with the page and /console/<file> with an embedded file.
func serveConsoleAsset(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/console/")
	page := name == "" || name == "console.html"
	if page {
		name = "console.html"
	}
	a, ok := consoleAssets[name]
	if !ok {
		p := newProblem(http.StatusNotFound, "not_found", "no such file: "+truncate(r.URL.Path, 256))
		p.Instance = truncate(r.URL.Path, 256)
		writeProblemHTTP(w, p)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", consolePageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Type", a.ct)
	if page {
		// The page's URL carries a ticket: keep it out of caches.
		h.Set("Cache-Control", "no-store")
	} else {
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.data))
}
