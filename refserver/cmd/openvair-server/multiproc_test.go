package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMultiProc runs two real server processes, A and B, on one PostgreSQL database (each with its own
// data directory, hence its own instance id; OPENVAIR_LEASE=3s, monitor_interval 1s, no hypervisor, LocalFS
// storages in directories both see) and checks what sharing the store promises: work of one process
// survives the restart of the other; the work of a process killed with SIGKILL mid-operation is failed by
// the other once its lease has run out and leaves no orphan; the monitors run on exactly one process and
// move within the lease; events written through one process reach subscribers of the other, and a
// subscriber resuming across restarts gets every event exactly once; an Idempotency-Key answer survives a
// SIGKILL and is replayed by either process.
func TestMultiProc(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process harness: skipped with -short")
	}
	start := time.Now()
	bin := crashServerBinary(t)
	admin := mpAdminDSN(t)
	t.Logf("server binary and PostgreSQL ready in %s", time.Since(start).Round(10*time.Millisecond))
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, c *mpCluster)
	}{
		{"UploadOnASurvivesRestartOfB", mpUploadSurvivesPeerRestart},
		{"KillAMidUploadCreateExtend", mpKillMidOperations},
		{"MonitorsOnOneProcessMoveWithinLease", mpMonitorLease},
		{"EventThroughAReachesSubscriberOnB", mpEventAcrossProcesses},
		{"ResumeAcrossRestartsExactlyOnce", mpResumeExactlyOnce},
		{"IdempotentRetryAfterKill", mpIdempotentRetry},
		{"JobQueueElectsALeader", mpJobQueueLeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			tc.fn(t, newMPCluster(t, bin, admin))
			t.Logf("%s: %s", tc.name, time.Since(began).Round(10*time.Millisecond))
		})
	}
}

// mpRuns is the log line of a process that takes the monitors.
const mpRuns = "monitors: this process runs them"

// mpUploadSurvivesPeerRestart: a slow image upload streams into A while B is killed (SIGKILL) and started
// again. B holds the monitors, so its start-up recovery and its monitor cycles (recovery included) run
// while the upload is live. The upload must complete on A untouched: image available with the bytes sent,
// its operation succeeded and owned by A, every change of the image made by that operation.
func mpUploadSurvivesPeerRestart(t *testing.T, c *mpCluster) {
	b := c.startNode("b") // first, so that B takes the monitors
	a := c.startNode("a")
	aID, bID := a.instanceID(), b.instanceID()
	require.NotEqual(t, aID, bID, "each process has its own identity")
	holder, _ := c.monitorLease(t)
	t.Logf("A=%s B=%s, monitors held by %s", aID, bID, holder)
	shared := filepath.Join(c.root, "shared")
	stID := a.createStorage(t, "shared", shared)

	body := newMPSlowBody(1)
	t.Cleanup(body.abort)
	result := a.upload(stID, "slow-image", "mp-upload-on-a", body.r)
	op := b.waitOpByRequest(t, "mp-upload-on-a", 10*time.Second, func(op mpOp) bool { return op.Status == "running" && op.TargetID != "" })
	require.Equal(t, "image.upload", op.Kind)
	require.Equal(t, aID, op.Owner, "A runs the upload")
	imgID := op.TargetID
	part := filepath.Join(shared, "image-"+imgID+".part")
	var img crashItem
	b.getJSON(t, "/api/v1/images/"+imgID, http.StatusOK, &img)
	require.Equal(t, "uploading", img.Status)
	time.Sleep(300 * time.Millisecond)

	sentAtKill := body.bytesSent()
	b.restart()
	require.Equal(t, bID, b.instanceID(), "B keeps its identity across the restart")
	if holder == bID {
		// B holds the lease again at once (same identity): its monitor cycles now run recovery.
		c.waitLeaseHolder(t, bID, mpLease+3*mpInterval)
	}
	time.Sleep(2*mpInterval + 500*time.Millisecond) // B's monitor cycles, with the upload still streaming
	select {
	case r := <-result:
		t.Fatalf("the upload ended while B restarted: %v %s\n%s", r.err, r.res, a.allLogs())
	default:
	}
	require.Greater(t, body.bytesSent(), sentAtKill, "the upload kept streaming while B restarted")
	b.getJSON(t, "/api/v1/images/"+imgID, http.StatusOK, &img)
	require.Equal(t, "uploading", img.Status, "B's restart and monitors leave A's live upload alone")
	require.True(t, mpExists(part), "the partial file of the live upload is still there")

	size, sum, err := body.end()
	require.NoError(t, err)
	var r mpUploadResult
	select {
	case r = <-result:
	case <-time.After(30 * time.Second):
		t.Fatal("the upload did not answer within 30 s of its end")
	}
	require.NoError(t, r.err)
	require.Equal(t, http.StatusCreated, r.res.code, "%s", r.res)
	var done struct {
		crashItem
		SHA256 string `json:"sha256"`
	}
	require.NoError(t, json.Unmarshal(r.res.body, &done))
	assert.Equal(t, imgID, done.ID)
	assert.Equal(t, "available", done.Status)
	assert.Equal(t, size, done.Size)
	assert.Equal(t, sum, done.SHA256, "the stored image has the bytes sent")
	t.Logf("uploaded %d bytes in %d KiB chunks; B was killed after %d bytes", size, mpChunk>>10, sentAtKill)

	b.getJSON(t, "/api/v1/images/"+imgID, http.StatusOK, &done)
	assert.Equal(t, "available", done.Status, "B sees the image available")
	assert.Equal(t, sum, done.SHA256)
	fi, err := os.Stat(filepath.Join(shared, "image-"+imgID))
	require.NoError(t, err, "the image file")
	assert.Equal(t, size, fi.Size())
	assert.False(t, mpExists(part), "no partial file left")

	final := b.op(t, op.ID)
	assert.Equal(t, "succeeded", final.Status, "the upload's operation: %+v", final)
	assert.Equal(t, aID, final.Owner)
	assert.Nil(t, final.Error)
	if assert.NotNil(t, final.Result) {
		assert.Equal(t, imgID, final.Result.ID)
	}

	// Every change of the image until it was available was made by the upload's operation: nobody else
	// (B's recovery) touched it, failed it or deleted it.
	evs := c.eventsOf(t, imgID)
	require.NotEmpty(t, evs)
	assert.Equal(t, "image.created", evs[0].Type)
	sawAvailable := false
	for _, e := range evs {
		var data struct {
			Status string `json:"status"`
		}
		if e.Data != "" {
			require.NoError(t, json.Unmarshal([]byte(e.Data), &data))
		}
		assert.NotEqual(t, "image.deleted", e.Type, "event %d", e.ID)
		assert.NotEqual(t, "error", data.Status, "event %d: the image was put in error", e.ID)
		if !sawAvailable {
			assert.Equal(t, op.ID, e.OperationID, "event %d (%s, status %s) was not made by the upload", e.ID, e.Type, data.Status)
		}
		sawAvailable = sawAvailable || data.Status == "available"
	}
	assert.True(t, sawAvailable, "an event shows the image available")
	bLogs := mpWithoutRequests(b.allLogs()) // the access log names what the test asked B for
	assert.NotContains(t, bLogs, op.ID, "B's runs never acted on the upload's operation")
	assert.NotContains(t, bLogs, imgID, "B's runs never acted on the image")
	assert.Empty(t, b.ops(t, "status=failed"), "no operation failed")
}

// mpKillMidOperations: A runs an image upload (streaming slowly), a volume create and a volume extend; the
// create and the extend are blocked in the kernel on a frozen filesystem (fsfreeze on an ext4 loop device)
// when A's process group gets SIGKILL. B must take the monitors, fail the three operations once A's lease
// has run out, and leave no orphan: the half-created volume (row and file) and the upload (row and
// partial file) are gone, the extended volume is in error with a reason (or available), and no operation
// stays pending or running.
func mpKillMidOperations(t *testing.T, c *mpCluster) {
	fs := newMPFS(t)
	a := c.startNode("a") // first: A takes the monitors, so B must take them over
	b := c.startNode("b")
	aID, bID := a.instanceID(), b.instanceID()
	holder, _ := c.monitorLease(t)
	t.Logf("A=%s B=%s, monitors held by %s", aID, bID, holder)
	shared := filepath.Join(c.root, "shared")
	sharedID := a.createStorage(t, "shared", shared)
	frozen := filepath.Join(fs.dir, "st")
	frozenID := a.createStorage(t, "frozen", frozen)
	ext := a.createVolume(t, "to-extend", frozenID, 1<<20)

	// The upload streams into A.
	body := newMPSlowBody(2)
	t.Cleanup(body.abort)
	upResult := a.upload(sharedID, "half-image", "mp-kill-upload", body.r)
	upOp := b.waitOpByRequest(t, "mp-kill-upload", 10*time.Second, func(op mpOp) bool { return op.Status == "running" && op.TargetID != "" })
	imgID := upOp.TargetID
	part := filepath.Join(shared, "image-"+imgID+".part")
	require.Eventually(t, func() bool {
		fi, err := os.Stat(part)
		return err == nil && fi.Size() >= 256<<10
	}, 10*time.Second, 20*time.Millisecond, "the upload writes its partial file")

	// Freeze the filesystem, then ask A for a create and an extend on it: both block in the kernel.
	fs.freeze(t)
	send := func(rid, path, body string) <-chan mpUploadResult {
		out := make(chan mpUploadResult, 1)
		go func() {
			res, err := a.call(context.Background(), &http.Client{}, http.MethodPost, path,
				map[string]string{"Content-Type": "application/json", "X-Request-Id": rid}, strings.NewReader(body))
			out <- mpUploadResult{res, err}
		}()
		return out
	}
	createResult := send("mp-kill-create", "/api/v1/volumes",
		fmt.Sprintf(`{"name":"half-volume","storage_id":%q,"format":"qcow2","size":8388608}`, frozenID))
	extendResult := send("mp-kill-extend", "/api/v1/volumes/"+ext.ID+"/extend", `{"size":4194304}`)
	running := func(op mpOp) bool { return op.Status == "running" && op.TargetID != "" }
	createOp := b.waitOpByRequest(t, "mp-kill-create", 10*time.Second, running)
	extendOp := b.waitOpByRequest(t, "mp-kill-extend", 10*time.Second, running)
	halfID := createOp.TargetID
	for _, op := range []mpOp{upOp, createOp, extendOp} {
		require.Equal(t, aID, op.Owner, "A runs %s", op.Kind)
	}
	var blocked []string
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		blocked = mpFrozenThreads(a.pid())
		var create, extend bool
		for _, th := range blocked {
			create = create || strings.Contains(th, "path_openat") // open(O_CREAT) of the new volume file
			extend = extend || strings.Contains(th, "ftruncate")   // growing the raw volume
		}
		if create && extend {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("A's create and extend do not both block on the frozen filesystem; blocked threads: %v", blocked)
		}
	}
	t.Logf("A's threads blocked on the frozen filesystem: %v", blocked)
	var v crashItem
	b.getJSON(t, "/api/v1/volumes/"+halfID, http.StatusOK, &v)
	require.Equal(t, "creating", v.Status)
	b.getJSON(t, "/api/v1/volumes/"+ext.ID, http.StatusOK, &v)
	require.Equal(t, "extending", v.Status)
	for _, ch := range []<-chan mpUploadResult{upResult, createResult, extendResult} {
		select {
		case r := <-ch:
			t.Fatalf("a request ended before the kill: %v %s", r.err, r.res)
		default:
		}
	}

	// SIGKILL to A's process group, then thaw: the blocked threads finish their system call and die.
	killedAt := time.Now()
	a.signalKill()
	time.Sleep(200 * time.Millisecond)
	fs.thaw()
	a.waitExit(t, 30*time.Second)
	body.abort()
	for name, ch := range map[string]<-chan mpUploadResult{"upload": upResult, "create": createResult, "extend": extendResult} {
		select {
		case r := <-ch:
			assert.True(t, r.err != nil || r.res.code >= 500, "%s answered although A was killed: %s", name, r.res)
		case <-time.After(10 * time.Second):
			t.Errorf("the %s request did not end after A died", name)
		}
	}
	halfFile := filepath.Join(frozen, "volume-"+halfID)
	t.Logf("after A exited: half-created volume file present: %v, partial upload file present: %v", mpExists(halfFile), mpExists(part))

	// B takes the monitors (if A held them) and fails A's operations once A's lease has run out.
	tookAt := c.waitLeaseHolder(t, bID, mpLease+5*mpInterval)
	for _, op := range []mpOp{upOp, createOp, extendOp} {
		var got mpOp
		require.Eventually(t, func() bool {
			got = b.op(t, op.ID)
			return got.Status != "running" && got.Status != "pending"
		}, 30*time.Second, 100*time.Millisecond, "B fails %s %s", op.Kind, op.ID)
		assert.Equal(t, "failed", got.Status, "%s: %+v", op.Kind, got)
		if assert.NotNil(t, got.Error, op.Kind) {
			assert.Equal(t, "unavailable", got.Error.Kind, "%s: %s", op.Kind, got.Error.Detail)
			assert.Contains(t, got.Error.Detail, aID, "%s: the error names the process that stopped", op.Kind)
		}
		leaseUntil, finished := c.opTimes(t, op.ID)
		assert.True(t, leaseUntil.After(killedAt), "%s: A renewed its lease until it was killed (lease until %s, killed at %s)", op.Kind, leaseUntil, killedAt)
		assert.True(t, finished.After(leaseUntil), "%s: failed at %s, before its lease ran out at %s", op.Kind, finished, leaseUntil)
		msg := ""
		if got.Error != nil {
			msg = got.Error.Detail
		}
		t.Logf("%s failed %s after the kill (lease ran out %s after it): %s", op.Kind, finished.Sub(killedAt).Round(10*time.Millisecond),
			leaseUntil.Sub(killedAt).Round(10*time.Millisecond), msg)
	}
	t.Logf("B held the monitors %s after the kill", tookAt.Sub(killedAt).Round(10*time.Millisecond))

	// No orphan: the half-created volume and the interrupted upload are gone, row and file.
	require.Eventually(t, func() bool {
		return b.must(t, http.MethodGet, "/api/v1/volumes/"+halfID, nil, "").code == http.StatusNotFound
	}, 15*time.Second, 100*time.Millisecond, "the half-created volume's row is removed")
	assert.False(t, mpExists(halfFile), "the half-created volume's file is removed")
	require.Eventually(t, func() bool {
		return b.must(t, http.MethodGet, "/api/v1/images/"+imgID, nil, "").code == http.StatusNotFound
	}, 15*time.Second, 100*time.Millisecond, "the interrupted upload's row is removed")
	require.Eventually(t, func() bool { return !mpExists(part) }, 15*time.Second, 100*time.Millisecond,
		"the interrupted upload's partial file %s is removed", part)
	assert.False(t, mpExists(filepath.Join(shared, "image-"+imgID)), "no image file for the interrupted upload")
	require.Eventually(t, func() bool {
		b.getJSON(t, "/api/v1/volumes/"+ext.ID, http.StatusOK, &v)
		return v.Status != "extending"
	}, 15*time.Second, 100*time.Millisecond, "the interrupted extend leaves the volume extending")
	switch v.Status {
	case "error":
		assert.NotEmpty(t, v.StatusReason, "an error volume says why")
		t.Logf("extended volume: error, %q", v.StatusReason)
	case "available":
		t.Logf("extended volume: available, size %d", v.Size)
	default:
		t.Errorf("the extended volume is %s (%q), want error or available", v.Status, v.StatusReason)
	}
	assert.Empty(t, b.ops(t, "status=running"), "no operation stays running")
	assert.Empty(t, b.ops(t, "status=pending"), "no operation stays pending")
	viol := crashCheck(t, &crashClient{base: b.base(), token: b.tok(), http: mpHTTP}, b.dataDir, t.TempDir())
	assert.True(t, viol.empty(), "consistency after recovery:\n%s", viol.String())
	assert.Contains(t, b.logs(), mpRuns, "B runs the monitors")
	if t.Failed() {
		t.Logf("--- A ---\n%s\n--- B ---\n%s", crashTail(a.allLogs(), 6000), crashTail(b.allLogs(), 6000))
	}
}

// mpWithoutRequests drops the access log lines (msg=request) of a server log.
func mpWithoutRequests(logs string) string {
	var keep []string
	for _, l := range strings.Split(logs, "\n") {
		if !strings.Contains(l, " msg=request ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// opTimes reads an operation's lease end and finish time from the store.
func (c *mpCluster) opTimes(t *testing.T, id string) (leaseUntil, finished time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var lu, fin int64
	require.NoError(t, c.db.QueryRowContext(ctx, "SELECT COALESCE(lease_until, 0), COALESCE(finished_at, 0) FROM operations WHERE id = $1", id).Scan(&lu, &fin))
	return time.Unix(0, lu), time.Unix(0, fin)
}

// mpMonitorLease: the monitors lease names exactly one of the two processes and does not move while both
// live; after a SIGKILL of the holder the other takes it once the lease has run out (within lease + a few
// monitor intervals), and the restarted old holder stands by. The logs agree.
func mpMonitorLease(t *testing.T, c *mpCluster) {
	a := c.startNode("a")
	b := c.startNode("b")
	byID := map[string]*mpNode{a.instanceID(): a, b.instanceID(): b}
	var holder string
	require.Eventually(t, func() bool { holder, _ = c.monitorLease(t); return holder != "" }, 5*time.Second, 50*time.Millisecond,
		"somebody takes the monitors")
	leader := byID[holder]
	require.NotNil(t, leader, "the monitors holder %s is neither A nor B", holder)
	other := a
	if leader == a {
		other = b
	}
	otherID := other.instanceID()
	t.Logf("monitors held by %s (%s)", leader.name, holder)

	for range 15 { // 3 s: more than two monitor cycles of each
		h, _ := c.monitorLease(t)
		require.Equal(t, holder, h, "the monitors lease moved while both processes run")
		time.Sleep(200 * time.Millisecond)
	}
	assert.Equal(t, 1, strings.Count(leader.logs(), mpRuns), "the holder says once that it runs the monitors")
	assert.Equal(t, 0, strings.Count(other.logs(), mpRuns), "the other never says it runs them")

	leader.kill()
	killedAt := time.Now()
	h, until := c.monitorLease(t)
	require.Equal(t, holder, h, "the lease stays with the dead holder until it runs out")
	took := c.waitLeaseHolder(t, otherID, mpLease+3*mpInterval+time.Second)
	t.Logf("%s took the monitors %s after the kill (the dead holder's lease ran out %s after it)", other.name,
		took.Sub(killedAt).Round(10*time.Millisecond), until.Sub(killedAt).Round(10*time.Millisecond))
	assert.False(t, took.Before(until), "taken over at %s, before the dead holder's lease ran out at %s", took, until)
	require.Eventually(t, func() bool { return strings.Contains(other.logs(), mpRuns) }, 2*time.Second, 20*time.Millisecond,
		"the new holder logs that it runs the monitors")

	leader.start() // the old holder comes back: it stands by
	for range 13 {
		h, _ := c.monitorLease(t)
		require.Equal(t, otherID, h, "the monitors moved back to the restarted process")
		time.Sleep(200 * time.Millisecond)
	}
	assert.Equal(t, 0, strings.Count(leader.logs(), mpRuns), "the restarted old holder does not run the monitors")
	assert.Equal(t, 1, strings.Count(other.logs(), mpRuns), "the new holder took them once")
	assert.NotContains(t, other.logs(), "monitors: another process runs them now", "the new holder never lost them")
}

// mpEventAcrossProcesses: a subscriber of B's event stream gets the storage.created event of a storage
// created through A within a few seconds (B's follower is woken by PostgreSQL LISTEN/NOTIFY).
func mpEventAcrossProcesses(t *testing.T, c *mpCluster) {
	a := c.startNode("a")
	b := c.startNode("b")
	since := c.lastEventID(t)
	s := b.subscribe(t, "type=storage.created&since="+strconv.FormatInt(since, 10), "")
	time.Sleep(300 * time.Millisecond) // the stream has caught up and follows live
	var lat []time.Duration
	for i := range 3 {
		name := fmt.Sprintf("from-a-%d", i)
		sent := time.Now()
		id := a.createStorage(t, name, filepath.Join(c.root, name))
		e := s.waitFor(t, 5*time.Second, "storage.created of "+name+" on B", func(e mpEvent) bool {
			var d struct {
				ResourceID string `json:"resource_id"`
			}
			return e.Type == "storage.created" && json.Unmarshal(e.Data, &d) == nil && d.ResourceID == id
		})
		var d struct {
			Type string `json:"type"`
			Data struct {
				Name string `json:"name"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal(e.Data, &d))
		assert.Equal(t, "storage.created", d.Type)
		assert.Equal(t, name, d.Data.Name, "the event carries the storage")
		lat = append(lat, e.At.Sub(sent))
	}
	t.Logf("storage.created through A reached B's subscriber %v after the request to A was sent", lat)
	assert.NotContains(t, b.logs(), "cannot listen for other processes' events", "B listens (LISTEN/NOTIFY)")
}

// mpResumeExactlyOnce: a subscriber of A reads events while writers change things through A and B; it
// disconnects, A is killed and restarted, and the subscriber resumes with Last-Event-ID. The ids it got,
// put together, are exactly the ids of the events table after its start id: each once, in order.
func mpResumeExactlyOnce(t *testing.T, c *mpCluster) {
	a := c.startNode("a")
	b := c.startNode("b")
	stID := a.createStorage(t, "shared", filepath.Join(c.root, "shared"))
	start := c.lastEventID(t)
	sub1 := a.subscribe(t, "since="+strconv.FormatInt(start, 10), "")

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	var okA, okB atomic.Int64
	for _, w := range []struct {
		n  *mpNode
		ok *atomic.Int64
	}{{a, &okA}, {b, &okB}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				body := fmt.Sprintf(`{"name":"w-%s-%d","storage_id":%q,"format":"raw","size":1048576}`, w.n.name, i, stID)
				res, err := w.n.call(ctx, mpHTTP, http.MethodPost, "/api/v1/volumes", map[string]string{"Content-Type": "application/json"}, strings.NewReader(body))
				if err != nil || res.code != http.StatusCreated {
					time.Sleep(50 * time.Millisecond) // A is down, or the request was cut
					continue
				}
				w.ok.Add(1)
				var v crashItem
				if json.Unmarshal(res.body, &v) == nil && i%2 == 0 {
					_, _ = w.n.call(ctx, mpHTTP, http.MethodDelete, "/api/v1/volumes/"+v.ID, nil, nil)
				}
			}
		}()
	}
	phase1 := time.Now()
	sub1.waitFor(t, 10*time.Second, "20 events on A's first stream", func(mpEvent) bool { return countAbove(sub1, start) >= 20 })
	time.Sleep(time.Second - time.Since(phase1))
	sub1.close()
	evs1, _ := sub1.snapshot()
	require.NotEmpty(t, evs1)
	last1 := evs1[len(evs1)-1].ID

	a.restart() // SIGKILL and start again while the writers go on (through B; A's writer fails meanwhile)
	sub2 := a.subscribe(t, "", strconv.FormatInt(last1, 10))
	okBeforeA := okA.Load()
	require.Eventually(t, func() bool { return okA.Load() > okBeforeA+3 }, 15*time.Second, 20*time.Millisecond,
		"writes through the restarted A succeed")
	time.Sleep(time.Second)
	stop()
	wg.Wait()
	require.Positive(t, okB.Load(), "writes through B succeeded")

	final := c.lastEventID(t)
	sub2.waitFor(t, 15*time.Second, fmt.Sprintf("event %d on the resumed stream", final), func(e mpEvent) bool { return e.ID >= final })
	evs2, _ := sub2.snapshot()
	var got []int64
	for _, e := range append(evs1, evs2...) {
		if e.ID <= final {
			got = append(got, e.ID)
		}
	}
	want := c.eventIDs(t, start, final)
	t.Logf("events %d..%d: %d stored, %d received (%d before the restart, up to id %d); writes through A %d, through B %d",
		start+1, final, len(want), len(got), len(evs1), last1, okA.Load(), okB.Load())
	require.Equal(t, want, got, "every event after the start id, each exactly once, in order")
	for _, e := range evs2 {
		require.Greater(t, e.ID, last1, "the resumed stream starts after Last-Event-ID")
	}
}

// countAbove counts the received messages with an id above from.
func countAbove(s *mpStream, from int64) int {
	evs, _ := s.snapshot()
	n := 0
	for _, e := range evs {
		if e.ID > from {
			n++
		}
	}
	return n
}

// mpIdempotentRetry: a create with an Idempotency-Key answered by A is answered again, byte for byte,
// after A was killed (SIGKILL) and restarted, and by B; only one volume exists.
func mpIdempotentRetry(t *testing.T, c *mpCluster) {
	a := c.startNode("a")
	b := c.startNode("b")
	stID := a.createStorage(t, "shared", filepath.Join(c.root, "shared"))
	body := fmt.Sprintf(`{"name":"idem-vol","storage_id":%q,"format":"raw","size":1048576}`, stID)
	hdr := map[string]string{"Idempotency-Key": "k1"}

	first := a.must(t, http.MethodPost, "/api/v1/volumes", hdr, body)
	require.Equal(t, http.StatusCreated, first.code, "%s", first)
	require.Empty(t, first.header.Get("Idempotent-Replayed"), "the first answer is not a replay")
	var v crashItem
	require.NoError(t, json.Unmarshal(first.body, &v))
	a.kill() // at once, after the answer

	a.start()
	for _, n := range []*mpNode{a, b} {
		again := n.must(t, http.MethodPost, "/api/v1/volumes", hdr, body)
		assert.Equal(t, first.code, again.code, "%s replays the status: %s", n.name, again)
		assert.Equal(t, string(first.body), string(again.body), "%s replays the body byte for byte", n.name)
		assert.Equal(t, "true", again.header.Get("Idempotent-Replayed"), "%s marks the replay", n.name)
		for _, h := range []string{"Location", "Operation-Id", "Content-Type"} {
			assert.Equal(t, first.header.Get(h), again.header.Get(h), "%s replays %s", n.name, h)
		}
	}
	var page struct {
		Items []crashItem `json:"items"`
	}
	b.getJSON(t, "/api/v1/volumes?name=idem-vol", http.StatusOK, &page)
	if assert.Len(t, page.Items, 1, "one volume named idem-vol") {
		assert.Equal(t, v.ID, page.Items[0].ID)
		assert.Equal(t, "available", page.Items[0].Status)
	}
	assert.Empty(t, b.ops(t, "kind=volume.create&status=failed"), "no second create was attempted")
	assert.Len(t, b.ops(t, "kind=volume.create"), 1, "one create operation")
}

// mpJobQueueLeader: the job queue (River, which runs asynchronous operations) elects one of the processes
// sharing the database as its leader; River's maintenance, among it the rescue of the jobs of a worker
// that died, runs only on the leader.
func mpJobQueueLeader(t *testing.T, c *mpCluster) {
	a := c.startNode("a")
	b := c.startNode("b")
	ids := map[string]string{a.instanceID(): "A", b.instanceID(): "B"}
	var leader string
	ok := assert.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := c.db.QueryRowContext(ctx, "SELECT leader_id FROM river_leader").Scan(&leader)
		return err == nil && ids[leader] != ""
	}, 5*time.Second, 100*time.Millisecond, "a process is elected leader of the job queue (table river_leader)")
	if ok {
		t.Logf("job queue leader: %s", ids[leader])
	}
	for _, n := range []*mpNode{a, b} {
		for _, l := range strings.Split(n.logs(), "\n") {
			if strings.Contains(l, "level=ERROR") {
				t.Errorf("%s logged an error: %s", n.name, l)
				break
			}
		}
	}
}
