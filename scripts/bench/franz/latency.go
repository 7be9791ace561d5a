package main

// The latency mode of franz_consumer (BENCH_ONLY=latency): the buckets of scripts/bench/latency_hist.h, so
// that latency.py merges every contender's files alike.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

const latBuckets = 12701

type latHist struct {
	dir      string
	n        uint64
	counts   [latBuckets]uint64
	dumpedN  uint64
	lastDump time.Time
}

func latBucket(us int64) int {
	switch {
	case us < 0:
		return 0
	case us < 10000:
		return int(us / 10)
	case us < 100000:
		return 1000 + int((us-10000)/100)
	case us < 1000000:
		return 1900 + int((us-100000)/1000)
	case us < 100000000:
		return 2800 + int((us-1000000)/10000)
	}
	return latBuckets - 1
}

func latLower(b int) int64 {
	switch {
	case b < 1000:
		return int64(b) * 10
	case b < 1900:
		return 10000 + int64(b-1000)*100
	case b < 2800:
		return 100000 + int64(b-1900)*1000
	}
	return 1000000 + int64(b-2800)*10000
}

// stamp: the second field of "SEQ STAMP ...", or -1.
func stamp(v []byte) int64 {
	i := 0
	for i < len(v) && v[i] != ' ' {
		i++
	}
	i++
	if i >= len(v) || v[i] < '0' || v[i] > '9' {
		return -1
	}
	var s int64
	for ; i < len(v) && v[i] >= '0' && v[i] <= '9'; i++ {
		s = s*10 + int64(v[i]-'0')
	}
	return s
}

func (h *latHist) record(v []byte, nowNs int64) {
	s := stamp(v)
	if s < 0 {
		return
	}
	h.counts[latBucket((nowNs-s)/1000)]++
	h.n++
}

// dump writes DIR/lat-PID.json through a temporary file and a rename.
func (h *latHist) dump() {
	pairs := [][2]uint64{}
	for b, c := range h.counts {
		if c > 0 {
			pairs = append(pairs, [2]uint64{uint64(latLower(b)), c})
		}
	}
	body, _ := json.Marshal(map[string]any{"pid": os.Getpid(), "n": h.n, "b": pairs})
	path := filepath.Join(h.dir, fmt.Sprintf("lat-%d.json", os.Getpid()))
	if os.WriteFile(path+".tmp", append(body, '\n'), 0o644) == nil {
		_ = os.Rename(path+".tmp", path)
	}
	h.lastDump = time.Now()
	h.dumpedN = h.n
}

// idle: a poll came back empty; the latest counts out now.
func (h *latHist) idle() {
	if h.n != h.dumpedN {
		h.dump()
	}
}
