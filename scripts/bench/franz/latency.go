package main

// The latency mode of franz_consumer (BENCH_ONLY=latency): the buckets and the DIR/lat-PID.bin file of
// scripts/bench/latency_hist.h (a shared mapping of u64 counters, so a SIGKILL loses no count), so that
// latency.py merges every contender's files alike.

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"
)

const latBuckets = 12701

type latHist struct {
	counts []uint64 // the mapping of DIR/lat-PID.bin
}

func openLatHist(dir string) (*latHist, error) {
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("lat-%d.bin", os.Getpid())), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Truncate(latBuckets * 8); err != nil {
		return nil, err
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, latBuckets*8, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return &latHist{counts: unsafe.Slice((*uint64)(unsafe.Pointer(&m[0])), latBuckets)}, nil
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
}

