#!/usr/bin/env node
// A kswarm --exec handler in Node.js, no npm packages.
//
// Run it (one handler per worker; records in, one verdict per record out):
//
//   kswarm run -b kafka:9092 -t events -g loader --format json --verdicts \
//       --dead-letter-topic events-dead \
//       --exec 'node examples/handlers/node/handler.js'
//
// Each record arrives on stdin as one JSON line (--format json):
// {"topic","partition","offset","timestamp","key","value","headers":[{"key","value"}]}.
// The value is taken to be a JSON object (an application event). For each
// record, in order, one line goes to stdout:
//   ok              handled
//   retry           deliver it again later (a write that failed; or the demo
//                   header `simulate: transient`, answered once with retry)
//   reject REASON   poison, never again: kswarm copies it to --dead-letter-topic
// Handled records are appended, one JSON line each, to $HANDLED_FILE (stderr
// if unset). Logs go to stderr: a stray stdout line would be taken as a verdict.
//
// Batching: each chunk read from stdin is handled whole, and the verdicts of
// its lines leave in one write. SIGTERM: stop reading, answer what was read,
// exit 0 (kswarm delivers anything unanswered again). On a graceful stop
// kswarm closes stdin instead (EOF).
'use strict';
const fs = require('fs');

const out = process.env.HANDLED_FILE ? fs.openSync(process.env.HANDLED_FILE, 'a') : 2;
const retried = new Set(); // "partition:offset" answered with retry (the demo)
let pending = '';

const log = (msg) => process.stderr.write(`handler.js: ${msg}\n`);
const oneLine = (s) => String(s).split(/\s+/).filter(Boolean).join(' ');

// The verdict for one record line; handled records are added to `lines`.
function verdict(line, lines) {
  let rec;
  try {
    rec = JSON.parse(line);
  } catch (e) {
    return 'reject not a kswarm JSON record (run kswarm with --format json)';
  }
  if (rec.value === null || rec.value === undefined) return 'reject no value';
  if (rec.value_encoding === 'base64') return 'reject value is not UTF-8 text';
  let event;
  try {
    event = JSON.parse(rec.value);
  } catch (e) {
    return `reject value is not JSON: ${oneLine(e.message)}`;
  }
  if (event === null || typeof event !== 'object' || Array.isArray(event)) {
    return 'reject value is not a JSON object';
  }
  const headers = Object.fromEntries((rec.headers || []).map((h) => [h.key, h.value]));
  const where = `${rec.partition}:${rec.offset}`;
  if (headers.simulate === 'transient' && !retried.has(where)) {
    retried.add(where);
    return 'retry';
  }
  lines.push(JSON.stringify({
    partition: rec.partition, offset: rec.offset, key: rec.key,
    source: headers.source ?? null, event: event.event ?? null, by: 'node',
  }) + '\n');
  return 'ok';
}

process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  pending += chunk;
  const whole = pending.split('\n');
  pending = whole.pop();
  const handled = [];
  const verdicts = whole.map((line) => verdict(line, handled));
  if (handled.length) {
    try {
      fs.writeSync(out, handled.join(''));
    } catch (e) {
      // Nothing of this batch is known written: retry every record we meant to keep.
      log(`cannot write the handled records: ${e.message}`);
      for (let i = 0; i < verdicts.length; i++) if (verdicts[i] === 'ok') verdicts[i] = 'retry';
    }
  }
  // Effects first, then the verdicts: `ok` means it is done. (stdout to a
  // pipe is synchronous in Node on Linux.)
  process.stdout.write(verdicts.map((v) => v + '\n').join(''));
});
process.stdin.on('end', () => process.exit(0));
process.stdout.on('error', () => process.exit(1)); // kswarm went away
// A 'data' callback runs whole before a signal's: every chunk read so far
// has its verdicts written when this runs.
process.on('SIGTERM', () => {
  process.stdin.pause();
  log('SIGTERM: every record read has its verdict; exiting');
  process.exit(0);
});
