// Node's cluster module forking kafkajs consumers: the original fork-per-core
// design, as a peer for scripts/bench.sh. kafkajs default settings except
// fromBeginning (read from earliest).
//   node kafkajs_cluster.js BROKERS TOPIC GROUP WORKERS count|failover
// count: each worker prints {"first":t} and {"n":N,"last":t} lines (t in s).
// failover: each worker prints "pid partition offset" per record.
// Both: {"pid":P,"assigned":[..],"t":t} when a worker has joined the group
// (GROUP_JOIN) and {"pid":P,"assigned":[],"t":t} when it starts rejoining.
// The primary re-forks a worker that dies (as such programs do); SIGTERM stops all.
'use strict';
const cluster = require('cluster');
const [brokers, topic, group, workersArg, mode] = process.argv.slice(2);

if (cluster.isPrimary) {
  let stopping = false;
  for (let i = 0; i < Number(workersArg); i++) cluster.fork();
  cluster.on('exit', () => { if (!stopping) cluster.fork(); });
  process.on('SIGTERM', () => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 5000).unref();
  });
} else {
  const { Kafka } = require('kafkajs');
  const kafka = new Kafka({ clientId: 'bench', brokers: brokers.split(',') });
  const consumer = kafka.consumer({ groupId: group });
  let n = 0, first = null, last = null, reported = 0;
  const report = () => {
    if (n !== reported) {
      process.stdout.write(JSON.stringify({ pid: process.pid, n, last }) + '\n');
      reported = n;
    }
  };
  const assigned = (parts) => process.stdout.write(
    JSON.stringify({ pid: process.pid, assigned: [...parts].sort((a, b) => a - b), t: Date.now() / 1000 }) + '\n');
  consumer.on(consumer.events.GROUP_JOIN, (e) => assigned(e.payload.memberAssignment[topic] || []));
  consumer.on(consumer.events.REBALANCING, () => assigned([]));
  const run = async () => {
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        if (mode === 'failover') {
          process.stdout.write(`${process.pid} ${partition} ${message.offset}\n`);
          return;
        }
        const now = Date.now() / 1000;
        if (first === null) {
          first = now;
          process.stdout.write(JSON.stringify({ pid: process.pid, first }) + '\n');
        }
        last = now;
        n++;
      },
    });
  };
  if (mode !== 'failover') setInterval(report, 250);
  process.on('SIGTERM', async () => {
    report();
    try { await consumer.disconnect(); } finally { process.exit(0); }
  });
  run().catch((e) => { console.error(e); process.exit(1); });
}
