package refserver_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	openapi_types "github.com/oapi-codegen/runtime/types"
	"github.com/openvair/openvair/refserver/internal/apiclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAPIClientAsyncFlow drives the asynchronous API through the generated client: an upload whose progress
// is visible while its bytes arrive, and a VM create and a VM stop answered 202 and waited for.
func TestAPIClientAsyncFlow(t *testing.T) {
	e := start(t, envOptions{libvirt: golibvirt.TestDefault})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := apiclient.NewClientWithResponses(e.URL, apiclient.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+e.admin)
		return nil
	}))
	require.NoError(t, err)
	path := e.storageDir("pool")
	sr, err := c.CreateStorageWithResponse(ctx, nil, localStorageBody(t, "local", path))
	require.NoError(t, err)
	require.NotNil(t, sr.JSON201, "%s", sr.Body)
	st := sr.JSON201

	// An upload streamed slowly: its operation shows the bytes received of the Content-Length meanwhile.
	content := iso()
	pr, pw := io.Pipe()
	half := len(content) / 2
	uploaded := make(chan *apiclient.UploadImageResponse, 1)
	go func() {
		r, err := c.UploadImageWithBodyWithResponse(ctx, &apiclient.UploadImageParams{StorageId: &st.Id, Name: ptr("slow")},
			"application/octet-stream", pr, func(_ context.Context, req *http.Request) error {
				req.ContentLength = int64(len(content))
				req.Header.Set("X-Request-Id", "upload-progress-1")
				return nil
			})
		assert.NoError(t, err)
		uploaded <- r
	}()
	_, err = pw.Write(content[:half])
	require.NoError(t, err)
	rid := "upload-progress-1"
	var live *apiclient.Operation
	require.Eventually(t, func() bool {
		lr, err := c.ListOperationsWithResponse(ctx, &apiclient.ListOperationsParams{RequestId: &rid})
		if err != nil || lr.JSON200 == nil || len(lr.JSON200.Items) == 0 {
			return false
		}
		op := lr.JSON200.Items[0]
		if op.Progress.BytesDone == nil || *op.Progress.BytesDone < int64(half)/2 {
			return false
		}
		live = &op
		return true
	}, 20*time.Second, 20*time.Millisecond, "the upload's progress is visible while the bytes arrive")
	assert.Equal(t, "image.upload", live.Kind)
	assert.Equal(t, apiclient.OperationStatus("running"), live.Status)
	require.NotNil(t, live.Progress.BytesTotal)
	assert.EqualValues(t, len(content), *live.Progress.BytesTotal)
	assert.Less(t, *live.Progress.BytesDone, int64(len(content)))
	_, err = pw.Write(content[half:])
	require.NoError(t, err)
	require.NoError(t, pw.Close())
	ur := <-uploaded
	require.NotNil(t, ur)
	require.NotNil(t, ur.JSON201, "%s", ur.Body)
	wr, err := c.WaitOperationWithResponse(ctx, live.Id, &apiclient.WaitOperationParams{Timeout: ptr(int64(30))})
	require.NoError(t, err)
	require.NotNil(t, wr.JSON200, "%s", wr.Body)
	assert.Equal(t, apiclient.OperationStatus("succeeded"), wr.JSON200.Status)
	assert.EqualValues(t, len(content), *wr.JSON200.Progress.BytesDone)

	// A VM create answered 202 with its operation, then waited for.
	async := "respond-async"
	vr, err := c.CreateVolumeWithResponse(ctx, nil, apiclient.CreateVolumeJSONRequestBody{Name: "root", StorageId: &st.Id, Format: ptr(apiclient.VolumeCreateFormat("qcow2")), Size: ptr(int64(1 << 20))})
	require.NoError(t, err)
	require.NotNil(t, vr.JSON201, "%s", vr.Body)
	cr, err := c.CreateVMWithResponse(ctx, &apiclient.CreateVMParams{Prefer: &async}, apiclient.CreateVMJSONRequestBody{Name: "web",
		Cpu: apiclient.CPU{Sockets: 1, Cores: 1, Threads: 1}, Memory: 64 << 20, Disks: &[]apiclient.DiskRequest{{VolumeId: &vr.JSON201.Id}}})
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, cr.StatusCode(), "%s", cr.Body)
	require.NotNil(t, cr.JSON202)
	assert.Equal(t, "/api/v1/operations/"+cr.JSON202.Id.String(), cr.HTTPResponse.Header.Get("Location"))
	done := waitOp(ctx, t, c, cr.JSON202.Id)
	require.NotNil(t, done.Result)
	vmID := done.Result.Id
	gr, err := c.GetVMWithResponse(ctx, vmID, nil)
	require.NoError(t, err)
	require.NotNil(t, gr.JSON200, "%s", gr.Body)
	assert.Equal(t, "web", gr.JSON200.Name)

	// A VM stop answered 202, then waited for.
	startR, err := c.StartVMWithResponse(ctx, vmID, nil)
	require.NoError(t, err)
	require.NotNil(t, startR.JSON200, "%s", startR.Body)
	force := true
	stopR, err := c.StopVMWithResponse(ctx, vmID, &apiclient.StopVMParams{Prefer: &async}, apiclient.StopVMJSONRequestBody{Force: &force})
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, stopR.StatusCode(), "%s", stopR.Body)
	waitOp(ctx, t, c, stopR.JSON202.Id)
	gr, err = c.GetVMWithResponse(ctx, vmID, nil)
	require.NoError(t, err)
	assert.Equal(t, apiclient.VMPowerStateShutOff, gr.JSON200.PowerState)
}

// waitOp waits for an operation through the API and requires it to succeed.
func waitOp(ctx context.Context, t *testing.T, c *apiclient.ClientWithResponses, id openapi_types.UUID) *apiclient.Operation {
	t.Helper()
	for {
		wr, err := c.WaitOperationWithResponse(ctx, id, &apiclient.WaitOperationParams{Timeout: ptr(int64(30))})
		require.NoError(t, err)
		require.NotNil(t, wr.JSON200, "%s", wr.Body)
		switch wr.JSON200.Status {
		case "pending", "running":
			continue
		}
		require.Equal(t, apiclient.OperationStatus("succeeded"), wr.JSON200.Status, "%+v", wr.JSON200.Error)
		return wr.JSON200
	}
}
