// One franz-go (kgo) consumer-group member for scripts/bench.sh (BENCH_ONLY=strong); built by bench.sh with
// `go build` into build/bench/franz (the module cache stays outside git).
//
//	franz_consumer BROKERS TOPIC GROUP [latency DIR | print]
//
// kgo's defaults except what the bench needs: the group, the topic, reset to the earliest offset. It counts the
// records of every poll (kgo decodes each into a kgo.Record, as any kgo application gets them). Output, one line
// each (t in Unix seconds), the bench's protocol:
//
//	{"pid":P,"assigned":[..],"t":t}  on every assignment change (empty list: revoked)
//	{"pid":P,"first":t} at the first record, then {"pid":P,"n":N,"last":t} every 0.25 s or 2,000 records while
//	records come (per poll at the finest; the harness times the first 10,000 records from these) and once a poll
//	of 0.2 s comes back empty (caught up)
//
// print: kswarm --format value's job instead of counting: each record's value and a newline to stdout (flushed
// after every poll), and nothing else, for the harness to count as it counts kswarm's lines.
// SIGTERM leaves the group (kgo commits on close) and exits.
// latency DIR (BENCH_ONLY=latency): each record's produce-to-poll latency into the histogram of
// latency.go, written to DIR/lat-PID.json every 0.5 s, when a poll comes back empty and at exit.
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func now() float64 { return float64(time.Now().UnixNano()) / 1e9 }

func main() {
	var lat *latHist
	print := len(os.Args) == 5 && os.Args[4] == "print"
	if len(os.Args) == 6 && os.Args[4] == "latency" {
		var err error
		if lat, err = openLatHist(os.Args[5]); err != nil {
			fmt.Fprintln(os.Stderr, "franz_consumer:", err)
			os.Exit(1)
		}
	} else if len(os.Args) != 4 && !print {
		fmt.Fprintln(os.Stderr, "usage: franz_consumer BROKERS TOPIC GROUP [latency DIR | print]")
		os.Exit(2)
	}
	brokers, topic, group := os.Args[1], os.Args[2], os.Args[3]
	pid := os.Getpid()
	out := bufio.NewWriterSize(os.Stdout, 1<<16)
	var mu sync.Mutex // out and owned: the rebalance callbacks run on kgo's goroutines
	owned := map[int32]bool{}
	report := func(ps map[string][]int32, add bool) {
		if print {
			return // stdout carries values only
		}
		mu.Lock()
		defer mu.Unlock()
		for _, p := range ps[topic] {
			if add {
				owned[p] = true
			} else {
				delete(owned, p)
			}
		}
		list := make([]int, 0, len(owned))
		for p := range owned {
			list = append(list, int(p))
		}
		sort.Ints(list)
		parts := make([]string, len(list))
		for i, p := range list {
			parts[i] = fmt.Sprint(p)
		}
		fmt.Fprintf(out, "{\"pid\":%d,\"assigned\":[%s],\"t\":%.6f}\n", pid, strings.Join(parts, ","), now())
		out.Flush()
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { report(m, true) }),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { report(m, false) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { report(m, false) }),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "franz_consumer:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var n, reportedN int
	var first, last, reported float64
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		fetches := cl.PollFetches(pctx)
		cancel()
		if fetches.IsClientClosed() {
			break
		}
		got := fetches.NumRecords()
		if lat != nil && got > 0 {
			fetches.EachRecord(func(r *kgo.Record) { lat.record(r.Value, time.Now().UnixNano()) })
		}
		if print {
			if got > 0 {
				fetches.EachRecord(func(r *kgo.Record) {
					out.Write(r.Value)
					out.WriteByte('\n')
				})
				out.Flush()
			}
			continue
		}
		t := now()
		n += got
		if got > 0 {
			last = t
			if first == 0 {
				first = t
				mu.Lock()
				fmt.Fprintf(out, "{\"pid\":%d,\"first\":%.6f}\n", pid, first)
				out.Flush()
				mu.Unlock()
			}
		}
		if n != reportedN && (got == 0 || t-reported > 0.25 || n-reportedN >= 2000) {
			mu.Lock()
			fmt.Fprintf(out, "{\"pid\":%d,\"n\":%d,\"last\":%.6f}\n", pid, n, last)
			out.Flush()
			mu.Unlock()
			reported, reportedN = t, n
		}
	}
	cl.Close()
}
