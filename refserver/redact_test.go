package refserver_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestErrorsNeverEchoSecrets: error responses do not repeat a graphics password the request carried,
// whatever made the request fail (a wrong content type, a wrong field type, an invalid value).
func TestErrorsNeverEchoSecrets(t *testing.T) {
	e := start(t, envOptions{})
	const secret = "s3cr3tPW"
	bodies := []struct{ name, contentType, body string }{
		{"wrong content type", "text/plain", `{"name":"web","cpu":{"sockets":1,"cores":1,"threads":1},"memory":1073741824,"graphics":{"type":"vnc","password":"` + secret + `"}}`},
		{"too long for vnc", "application/json", `{"name":"web","cpu":{"sockets":1,"cores":1,"threads":1},"memory":1073741824,"graphics":{"type":"vnc","password":"` + secret + `-and-more"}}`},
		{"wrong field type", "application/json", `{"name":"web","cpu":{"sockets":1,"cores":1,"threads":1},"memory":1073741824,"graphics":{"type":"vnc","password":["` + secret + `"]}}`},
	}
	for _, c := range bodies {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, e.URL+"/api/v1/vms", strings.NewReader(c.body))
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+e.admin)
			req.Header.Set("Content-Type", c.contentType)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.GreaterOrEqual(t, resp.StatusCode, 400)
			assert.NotContains(t, string(b), secret, "status %d: %s", resp.StatusCode, b)
		})
	}
}
