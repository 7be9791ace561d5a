// A kswarm --exec handler in Go, standard library only.
//
// Build and run it (one handler per worker; records in, one verdict per record out):
//
//	go build -o kswarm-handler ./examples/handlers/go
//	kswarm run -b kafka:9092 -t events -g loader --format json --verdicts \
//	    --dead-letter-topic events-dead --exec ./kswarm-handler
//
// Each record arrives on stdin as one JSON line (--format json):
// {"topic","partition","offset","timestamp","key","value","headers":[{"key","value"}]}.
// The value is taken to be a JSON object (an application event). For each
// record, in order, one line goes to stdout:
//
//	ok              handled
//	retry           deliver it again later (a write that failed; or the demo
//	                header `simulate: transient`, answered once with retry)
//	reject REASON   poison, never again: kswarm copies it to --dead-letter-topic
//
// Handled records are appended, one JSON line each, to $HANDLED_FILE (stderr
// if unset). Logs go to stderr: a stray stdout line would be taken as a verdict.
//
// Batching: lines are handled while more are already read; the verdicts are
// flushed in one write when none is waiting. SIGTERM: stop taking lines,
// answer those already read, exit 0 (kswarm delivers anything unanswered
// again). On a graceful stop kswarm closes stdin instead (EOF).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

type header struct {
	Key   string  `json:"key"`
	Value *string `json:"value"`
}

type record struct {
	Topic         string   `json:"topic"`
	Partition     int32    `json:"partition"`
	Offset        int64    `json:"offset"`
	Timestamp     int64    `json:"timestamp"`
	Key           *string  `json:"key"`
	Value         *string  `json:"value"`
	ValueEncoding string   `json:"value_encoding"`
	Headers       []header `json:"headers"`
}

type handled struct {
	Partition int32   `json:"partition"`
	Offset    int64   `json:"offset"`
	Key       *string `json:"key"`
	Source    *string `json:"source"`
	Event     any     `json:"event"`
	By        string  `json:"by"`
}

type where struct {
	partition int32
	offset    int64
}

type handler struct {
	out     *bufio.Writer
	retried map[where]bool // answered with retry (the demo)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// verdict for one record line; a handled record is buffered to h.out.
func (h *handler) verdict(line []byte) string {
	var rec record
	if err := json.Unmarshal(line, &rec); err != nil {
		return "reject not a kswarm JSON record (run kswarm with --format json)"
	}
	if rec.Value == nil {
		return "reject no value"
	}
	if rec.ValueEncoding == "base64" {
		return "reject value is not UTF-8 text"
	}
	var event map[string]any
	if err := json.Unmarshal([]byte(*rec.Value), &event); err != nil {
		if _, ok := err.(*json.UnmarshalTypeError); ok {
			return "reject value is not a JSON object"
		}
		return "reject value is not JSON: " + oneLine(err.Error())
	}
	if event == nil {
		return "reject value is not a JSON object"
	}
	headers := map[string]*string{}
	for _, hd := range rec.Headers {
		headers[hd.Key] = hd.Value
	}
	w := where{rec.Partition, rec.Offset}
	if s := headers["simulate"]; s != nil && *s == "transient" && !h.retried[w] {
		h.retried[w] = true
		return "retry"
	}
	b, _ := json.Marshal(handled{rec.Partition, rec.Offset, rec.Key, headers["source"], event["event"], "go"})
	h.out.Write(append(b, '\n'))
	return "ok"
}

func main() {
	var sink io.Writer = os.Stderr
	if path := os.Getenv("HANDLED_FILE"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "handler: %v\n", err)
			os.Exit(1)
		}
		sink = f
	}
	h := &handler{out: bufio.NewWriter(sink), retried: map[where]bool{}}
	verdicts := bufio.NewWriterSize(os.Stdout, 64<<10)

	// Lines are read on their own goroutine, so that SIGTERM is seen while a read blocks.
	lines := make(chan []byte, 4096)
	go func() {
		r := bufio.NewReaderSize(os.Stdin, 64<<10)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil { // EOF: kswarm is stopping this worker (a last partial line is no record)
				close(lines)
				return
			}
			lines <- line[:len(line)-1]
		}
	}()
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)

	var pending []string
	flush := func() {
		// Effects first, then the verdicts: `ok` means it is done.
		if err := h.out.Flush(); err != nil {
			fmt.Fprintf(os.Stderr, "handler: cannot write the handled records: %v\n", err)
			for i, v := range pending {
				if v == "ok" {
					pending[i] = "retry"
				}
			}
			h.out.Reset(sink)
		}
		for _, v := range pending {
			verdicts.WriteString(v + "\n")
		}
		pending = pending[:0]
		if err := verdicts.Flush(); err != nil {
			os.Exit(1) // kswarm went away
		}
	}
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				flush()
				return
			}
			pending = append(pending, h.verdict(line))
			if len(lines) == 0 { // nothing more read yet: answer what we have
				flush()
			}
		case <-term:
			// Whatever the reader has taken from the pipe is answered too.
			for {
				select {
				case line, ok := <-lines:
					if ok {
						pending = append(pending, h.verdict(line))
						continue
					}
				default:
				}
				break
			}
			flush()
			fmt.Fprintln(os.Stderr, "handler: SIGTERM: every record read has its verdict; exiting")
			return
		}
	}
}
