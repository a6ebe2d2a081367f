package refserver_test

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openvair/openvair/refserver"
)

// TestEveryOperationNeedsAToken enumerates every /api/v1 operation of the served OpenAPI document: each
// answers 401 without a token, each write (and a console read) answers 403 to a reader, and each other read
// is allowed to a reader.
func TestEveryOperationNeedsAToken(t *testing.T) {
	e := start(t, envOptions{})
	r := e.do("GET", "/openapi.json", "", nil)
	require.Equal(t, 200, r.Status)
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string                `json:"operationId"`
			Security    []map[string][]string `json:"security"`
			Responses   map[string]any        `json:"responses"`
		} `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &doc))

	id := uuid.NewString()
	var ops []string
	for path, item := range doc.Paths {
		if !strings.HasPrefix(path, "/api/v1/") {
			continue
		}
		concrete := strings.NewReplacer("{id}", id, "{volume_id}", id).Replace(path)
		for method, op := range item {
			method = strings.ToUpper(method)
			ops = append(ops, method+" "+path)
			assert.NotEmpty(t, op.Security, "%s %s declares bearer security", method, path)
			assert.Contains(t, op.Responses, "401", "%s %s documents 401", method, path)

			e.do(method, concrete, "", nil).problemIs(t, http.StatusUnauthorized, "unauthenticated")
			e.do(method, concrete, "ovt_not-a-token", nil).problemIs(t, http.StatusUnauthorized, "unauthenticated")
			rr := e.do(method, concrete, e.reader, nil)
			// A VM's console and its log are control of the guest: admin only, though read with GET.
			adminOnly := strings.HasPrefix(path, "/api/v1/vms/{id}/console")
			if method == http.MethodGet && !adminOnly {
				assert.NotContains(t, []int{401, 403}, rr.Status, "a reader may %s %s: %s", method, path, rr.Body)
			} else {
				rr.problemIs(t, http.StatusForbidden, "forbidden")
				assert.Contains(t, op.Responses, "403", "%s %s documents 403", method, path)
			}
		}
	}
	sort.Strings(ops)
	t.Logf("%d operations: %s", len(ops), strings.Join(ops, ", "))
	// Every resource of the API is there.
	for _, want := range []string{
		"GET /api/v1/storages", "POST /api/v1/storages", "GET /api/v1/storages/{id}", "PATCH /api/v1/storages/{id}", "DELETE /api/v1/storages/{id}",
		"GET /api/v1/volumes", "POST /api/v1/volumes", "GET /api/v1/volumes/{id}", "PATCH /api/v1/volumes/{id}", "DELETE /api/v1/volumes/{id}", "POST /api/v1/volumes/{id}/extend",
		"GET /api/v1/images", "POST /api/v1/images", "GET /api/v1/images/{id}", "PATCH /api/v1/images/{id}", "DELETE /api/v1/images/{id}",
		"GET /api/v1/vms", "POST /api/v1/vms", "GET /api/v1/vms/{id}", "PATCH /api/v1/vms/{id}", "DELETE /api/v1/vms/{id}",
		"POST /api/v1/vms/{id}/start", "POST /api/v1/vms/{id}/stop", "POST /api/v1/vms/{id}/reboot", "GET /api/v1/vms/{id}/console",
		"POST /api/v1/vms/{id}/volumes", "DELETE /api/v1/vms/{id}/volumes/{volume_id}",
	} {
		assert.Contains(t, ops, want)
	}
}

// TestTokens checks token parsing, hashing and constant-time lookup.
func TestTokens(t *testing.T) {
	a, err := refserver.GenerateToken()
	require.NoError(t, err)
	b, err := refserver.GenerateToken()
	require.NoError(t, err)
	assert.NotEqual(t, a, b)
	assert.Len(t, refserver.HashToken(a), 64)

	toks, err := refserver.NewTokens(refserver.Token{Name: "root", Role: refserver.RoleAdmin, SHA256: refserver.HashToken(a)},
		refserver.Token{Name: "ci", Role: refserver.RoleReader, SHA256: refserver.HashToken(b)})
	require.NoError(t, err)
	name, role, ok := toks.Authenticate(b)
	assert.True(t, ok)
	assert.Equal(t, "ci", name)
	assert.Equal(t, refserver.RoleReader, role)
	_, _, ok = toks.Authenticate(refserver.HashToken(a))
	assert.False(t, ok, "the stored hash is not a token")
	_, _, ok = toks.Authenticate("")
	assert.False(t, ok)

	for _, bad := range []refserver.Token{
		{Name: "", Role: refserver.RoleAdmin, SHA256: refserver.HashToken(a)},
		{Name: "x", Role: "owner", SHA256: refserver.HashToken(a)},
		{Name: "x", Role: refserver.RoleReader, SHA256: "abc"},
		{Name: "x", Role: refserver.RoleReader, SHA256: a},
	} {
		_, err := refserver.NewTokens(bad)
		assert.Error(t, err, "%+v", bad)
	}
}
