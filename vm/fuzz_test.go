package vm_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/openvair/openvair/internal/errkind"
	"github.com/openvair/openvair/internal/sdktest"
	"github.com/openvair/openvair/vm"
)

// FuzzCreateRequest feeds arbitrary JSON bodies to VM creation: it must never panic, and whatever it
// refuses it refuses with a typed error (never an untyped one that would become a 500).
func FuzzCreateRequest(f *testing.F) {
	seeds := []string{
		`{"name":"web","cpu":{"sockets":1,"cores":2,"threads":1},"memory":536870912}`,
		`{"name":"web","cpu":{"sockets":1,"cores":1,"threads":1,"mode":"custom","model":"x"},"memory":16777216,"boot":["hd","hd"]}`,
		`{"name":"a","cpu":{"sockets":-1},"memory":-1,"disks":[{"volume_id":"00000000-0000-0000-0000-000000000001","new":{}}],"interfaces":[{"type":"bridge","source":"br0","mac":"zz"}]}`,
		`{"name":"x","cpu":{"sockets":2147483647,"cores":2147483647,"threads":2147483647},"memory":9223372036854775807}`,
		`{"graphics":{"type":"vnc","listen":"::1","password":"\u0000"}}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	e := sdktest.New(f, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		var req vm.CreateRequest
		if json.Unmarshal(body, &req) != nil {
			return
		}
		_ = req.Validate()
		m, err := e.Sys.VMs.Create(e.Ctx, req)
		if err == nil {
			if derr := e.Sys.VMs.Delete(e.Ctx, m.ID, vm.DeleteOptions{DeleteVolumes: true}); derr != nil {
				t.Fatalf("delete what was created: %v", derr)
			}
			return
		}
		if errkind.KindOf(err) == nil && !errors.Is(err, errkind.Invalid) {
			t.Fatalf("untyped error for %s: %v", body, err)
		}
	})
}
