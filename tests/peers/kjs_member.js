// A kafkajs (2.x) peer for the interop tests (tests/interop.rs).
//
//   node kjs_member.js BROKERS TOPIC GROUP ASSIGNOR OUTFILE
//
// Joins GROUP (classic protocol) with ASSIGNOR (range | roundrobin), reads TOPIC from the earliest
// offset with auto commit off, appends one line {"partition":P,"offset":O,"value":"..."} per record
// to OUTFILE (one write(2) each), commits synchronously after each batch, prints
// {"assigned":[...],"leader":BOOL} on stdout on every join, and disconnects (LeaveGroup) when its
// stdin closes, printing {"closed":true}.
//
// kafkajs's only built-in assigner is named "RoundRobinAssigner", a name no other client advertises,
// so it could never be chosen in a group with Java, librdkafka, kafka-python or kswarm members. Both
// assigners here are written against kafkajs's custom assigner API instead, under the standard
// protocol names "range" and "roundrobin", with ConsumerProtocol v0 subscriptions and assignments
// (the layout every client reads) and the member and partition order of the Java client:
// members sorted by group instance id, else member id; range deals each topic's partitions in
// contiguous runs, the first n % m members one extra; roundrobin deals all (topic, partition) pairs,
// sorted, in turn to the members subscribed to the topic.
//
// kafkajs comes from build/node (scripts/peers.sh install); NODE_PATH may point elsewhere.
'use strict'

const fs = require('fs')
const path = require('path')

function loadKafkajs() {
  try {
    return require('kafkajs')
  } catch (_) {
    const build = process.env.KSWARM_BUILD_DIR || path.join(__dirname, '..', '..', 'build')
    try {
      return require(path.join(build, 'node', 'node_modules', 'kafkajs'))
    } catch (e) {
      process.stderr.write(`kjs_member.js: kafkajs not found (${e.message}); run scripts/peers.sh install\n`)
      process.exit(3)
    }
  }
}

const { Kafka, AssignerProtocol, logLevel } = loadKafkajs()
const { MemberMetadata, MemberAssignment } = AssignerProtocol

function out(obj) {
  fs.writeSync(1, JSON.stringify(obj) + '\n')
}

// Members in the Java client's order: group instance id if any, else member id.
function sortedMembers(members) {
  const key = m => m.groupInstanceId || m.memberId
  return members
    .map(m => ({
      memberId: m.memberId,
      groupInstanceId: m.groupInstanceId,
      topics: MemberMetadata.decode(m.memberMetadata).topics,
    }))
    .sort((a, b) => {
      const ka = key(a)
      const kb = key(b)
      if (ka !== kb) return ka < kb ? -1 : 1
      return a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0
    })
}

// Sorted partition ids of each topic any member subscribed to, sorted by topic.
function topicPartitions(cluster, subs) {
  const topics = [...new Set(subs.flatMap(s => s.topics))].sort()
  const res = []
  for (const topic of topics) {
    let meta = []
    try {
      meta = cluster.findTopicPartitionMetadata(topic) || []
    } catch (_) {
      meta = []
    }
    res.push({ topic, partitions: meta.map(m => m.partitionId).sort((a, b) => a - b) })
  }
  return res
}

function encodeAll(subs, assignment, version) {
  return subs.map(s => ({
    memberId: s.memberId,
    memberAssignment: MemberAssignment.encode({ version, assignment: assignment[s.memberId] }),
  }))
}

const RangeAssigner = ({ cluster }) => ({
  name: 'range',
  version: 0,
  async assign({ members }) {
    const subs = sortedMembers(members)
    const assignment = {}
    for (const s of subs) assignment[s.memberId] = {}
    for (const { topic, partitions } of topicPartitions(cluster, subs)) {
      const consumers = subs.filter(s => s.topics.includes(topic))
      if (consumers.length === 0 || partitions.length === 0) continue
      const per = Math.floor(partitions.length / consumers.length)
      const extra = partitions.length % consumers.length
      consumers.forEach((s, i) => {
        const start = per * i + Math.min(i, extra)
        const len = per + (i < extra ? 1 : 0)
        if (len > 0) assignment[s.memberId][topic] = partitions.slice(start, start + len)
      })
    }
    return encodeAll(subs, assignment, this.version)
  },
  protocol({ topics }) {
    return { name: this.name, metadata: MemberMetadata.encode({ version: this.version, topics }) }
  },
})

const RoundRobinAssigner = ({ cluster }) => ({
  name: 'roundrobin',
  version: 0,
  async assign({ members }) {
    const subs = sortedMembers(members)
    const assignment = {}
    for (const s of subs) assignment[s.memberId] = {}
    let next = 0
    for (const { topic, partitions } of topicPartitions(cluster, subs)) {
      if (!subs.some(s => s.topics.includes(topic))) continue
      for (const p of partitions) {
        while (!subs[next % subs.length].topics.includes(topic)) next++
        const s = subs[next % subs.length]
        next++
        ;(assignment[s.memberId][topic] = assignment[s.memberId][topic] || []).push(p)
      }
    }
    return encodeAll(subs, assignment, this.version)
  },
  protocol({ topics }) {
    return { name: this.name, metadata: MemberMetadata.encode({ version: this.version, topics }) }
  },
})

async function main() {
  const [brokers, topic, group, assignorName, outfile] = process.argv.slice(2)
  if (!outfile) {
    process.stderr.write('usage: node kjs_member.js BROKERS TOPIC GROUP range|roundrobin OUTFILE\n')
    process.exit(2)
  }
  const assigner = { range: RangeAssigner, roundrobin: RoundRobinAssigner }[assignorName]
  if (!assigner) {
    process.stderr.write(`kjs_member.js: unknown assignor ${assignorName}; use range or roundrobin\n`)
    process.exit(2)
  }

  const kafka = new Kafka({
    clientId: 'kafkajs-peer',
    brokers: brokers.split(','),
    logLevel: logLevel.WARN,
    // Logs on stderr: stdout carries the JSON lines.
    logCreator: () => ({ namespace, level, label, log }) => {
      const { message, ...extra } = log
      process.stderr.write(`[kafkajs] ${label} ${namespace}: ${message} ${JSON.stringify(extra)}\n`)
    },
  })
  const consumer = kafka.consumer({
    groupId: group,
    partitionAssigners: [assigner],
    sessionTimeout: 6000,
    rebalanceTimeout: 10000,
    heartbeatInterval: 300,
    maxWaitTimeInMs: 100,
    metadataMaxAge: 1000,
  })
  const fd = fs.openSync(outfile, 'a')

  consumer.on(consumer.events.GROUP_JOIN, e => {
    const parts = (e.payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b)
    out({ assigned: parts, leader: e.payload.isLeader })
  })
  consumer.on(consumer.events.CRASH, e => {
    process.stderr.write(`kjs_member.js: consumer crashed: ${e.payload.error} (restart: ${e.payload.restart})\n`)
  })

  let closing = false
  const close = async () => {
    if (closing) return
    closing = true
    try {
      await consumer.disconnect()
    } catch (e) {
      process.stderr.write(`kjs_member.js: disconnect: ${e}\n`)
    }
    fs.closeSync(fd)
    out({ closed: true })
    process.exit(0)
  }
  process.stdin.on('end', close)
  process.stdin.on('error', close)
  process.stdin.resume()

  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, isRunning, isStale }) => {
      let last = null
      for (const m of batch.messages) {
        if (!isRunning() || isStale()) break
        const value = m.value === null ? '' : m.value.toString('utf8')
        fs.writeSync(fd, JSON.stringify({ partition: batch.partition, offset: Number(m.offset), value }) + '\n')
        resolveOffset(m.offset)
        last = m.offset
      }
      if (last !== null) {
        const offset = (BigInt(last) + 1n).toString()
        try {
          await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset }])
        } catch (e) {
          // A rebalance took the partition away: its next owner gets these records again.
          process.stderr.write(`kjs_member.js: commit of partition ${batch.partition} failed: ${e}\n`)
        }
      }
    },
  })
}

main().catch(e => {
  process.stderr.write(`kjs_member.js: ${e && e.stack ? e.stack : e}\n`)
  process.exit(1)
})
