package event_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/openvair/openvair/internal/event"
	"github.com/openvair/openvair/repo/memory"
)

// BenchmarkFanout measures the delivery latency of one event, from the start of its unit of work
// (Append, commit, Notify) to its receipt by each live subscriber, over the memory store's log with Run
// fanning out, at 1, 100 and 1000 subscribers. It reports the 50th and 99th percentiles over every
// delivery (p50-ns, p99-ns); ns/op is the time until every subscriber has the event.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			st := memory.New()
			log := st.Events()
			svc := event.NewService(log, event.Config{Poll: time.Hour})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go svc.Run(ctx)

			var sent atomic.Int64      // UnixNano when the current event's unit of work started
			var remaining atomic.Int64 // subscribers that have not received the current event
			done := make(chan struct{}, 1)
			lats := make([][]time.Duration, n) // each subscriber's own, so that measuring adds no contention
			for i := range n {
				go func() {
					for _, err := range svc.Subscribe(ctx, 0, event.Filter{}) {
						if err != nil {
							return
						}
						lats[i] = append(lats[i], time.Duration(time.Now().UnixNano()-sent.Load()))
						if remaining.Add(-1) == 0 {
							done <- struct{}{}
						}
					}
				}()
			}
			time.Sleep(100 * time.Millisecond) // every subscriber reaches the live feed
			b.ResetTimer()
			for b.Loop() {
				remaining.Store(int64(n))
				sent.Store(time.Now().UnixNano())
				err := st.InTx(ctx, func(ctx context.Context) error {
					return log.Append(ctx, &event.Event{Type: "volume.updated", Resource: "volume", ResourceID: uuid.New(),
						Version: 1, Time: time.Now(), Data: []byte(`{"name":"v"}`)})
				})
				if err != nil {
					b.Fatal(err)
				}
				svc.Notify()
				<-done
			}
			b.StopTimer()
			cancel()
			var all []time.Duration
			for _, l := range lats {
				all = append(all, l...)
			}
			slices.Sort(all)
			b.ReportMetric(float64(all[len(all)/2]), "p50-ns")
			b.ReportMetric(float64(all[len(all)*99/100]), "p99-ns")
		})
	}
}
