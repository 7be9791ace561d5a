#!/usr/bin/env bash
# A kswarm --exec handler in bash, with jq for the JSON.
#
# Run it (one handler per worker; records in, one verdict per record out):
#
#   kswarm run -b kafka:9092 -t events -g loader --format json --verdicts \
#       --dead-letter-topic events-dead --exec examples/handlers/shell/handler.sh
#
# Each record arrives on stdin as one JSON line (--format json):
# {"topic","partition","offset","timestamp","key","value","headers":[{"key","value"}]}.
# The value is taken to be a JSON object (an application event). For each
# record, in order, one line goes to stdout:
#   ok              handled
#   retry           deliver it again later (a write that failed; or the demo
#                   header `simulate: transient`, answered once with retry)
#   reject REASON   poison, never again: kswarm copies it to --dead-letter-topic
# Handled records are appended, one JSON line each, to $HANDLED_FILE (stderr if
# unset). Logs go to stderr: a stray stdout line would be taken as a verdict.
#
# Batching: verdicts are gathered while jq has more lines ready, then written
# in one printf. SIGTERM: stop taking lines (within a second: bash traps wait
# for `read` to return), answer those taken, exit 0 (kswarm delivers anything
# unanswered again). On a graceful stop kswarm closes stdin instead (EOF).
set -u

# One jq for the whole stream: per record one line, "VERDICT<TAB>WHERE<TAB>HANDLED-JSON"
# (VERDICT is ok, transient or a reject; WHERE is partition:offset).
read -r -d '' JQ <<'JQ'
(try fromjson catch null) as $r
| if ($r | type) != "object" then "reject not a kswarm JSON record (run kswarm with --format json)\t-\t"
  elif $r.value == null then "reject no value\t-\t"
  elif $r.value_encoding == "base64" then "reject value is not UTF-8 text\t-\t"
  else (try ($r.value | fromjson | {ok: .}) catch {err: .}) as $e
  | if $e.err then "reject value is not JSON: \($e.err | tostring | gsub("\\s+"; " "))\t-\t"
    elif ($e.ok | type) != "object" then "reject value is not a JSON object\t-\t"
    else (($r.headers // []) | map({(.key): .value}) | add // {}) as $h
    | (if $h.simulate == "transient" then "transient" else "ok" end)
      + "\t\($r.partition):\($r.offset)\t"
      + ({partition: $r.partition, offset: $r.offset, key: $r.key, source: $h.source,
          event: $e.ok.event, by: "shell"} | tojson)
    end
  end
JQ

if [[ -n "${HANDLED_FILE:-}" ]]; then exec 4>>"$HANDLED_FILE"; else exec 4>&2; fi
exec 3< <(exec jq -R -r --unbuffered "$JQ")
declare -A retried=()   # partition:offset answered with retry (the demo)
stop=0
trap 'stop=1' TERM

batch=""
partial=""
while (( ! stop )); do
  # bash runs the TERM trap only once `read` returns, so it waits at most a second at a time;
  # a line cut by the timeout is kept and completed by the next read.
  if IFS= read -r -t 1 -u 3 line; then
    line=$partial$line
    partial=""
  elif (( $? > 128 )); then
    partial+=$line
    continue
  else
    break # EOF: kswarm is stopping this worker
  fi
  IFS=$'\t' read -r verdict where record <<<"$line"
  if [[ "$verdict" == transient ]]; then
    if [[ -z "${retried[$where]:-}" ]]; then retried[$where]=1; verdict=retry; else verdict=ok; fi
  fi
  if [[ "$verdict" == ok ]] && ! printf '%s\n' "$record" >&4; then
    echo "handler.sh: cannot write record $where" >&2
    verdict=retry
  fi
  batch+="$verdict"$'\n'
  # More lines already waiting: answer them together.
  if ! read -r -t 0 -u 3; then
    printf '%s' "$batch" || exit 1
    batch=""
  fi
done
printf '%s' "$batch"
(( stop )) && echo "handler.sh: SIGTERM: every record read has its verdict; exiting" >&2
exit 0
