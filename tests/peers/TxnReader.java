// A Java KafkaConsumer (kafka-clients) that reads a whole topic with a chosen isolation level, for the
// exactly-once tests of issue 29 (`kswarm run --output-topic`).
//
//   java -cp build/java-txn-peer:build/kafka/libs/* TxnReader BROKERS TOPIC ISOLATION N IDLE_MS MODE
//        [EXPECT_FILE|-] [KEY=VALUE..]
//
// ISOLATION: read_committed or read_uncommitted. No group: every partition of TOPIC is assigned and read
// from the beginning (nothing is committed). Reading stops once at least N records were read (N=0: any
// number) and the position of every partition has reached its end offset (read_committed: the last stable
// offset, so the records of an open transaction are not waited for; read_uncommitted: the high
// watermark), or after IDLE_MS without a new record.
// MODE:
//   values   each record's value (UTF-8, one line each) on stdout, in the order read (per partition in
//            offset order, partitions interleaved)
//   summary  one JSON line: {"isolation","count","distinct","duplicates","complete","partitions":{P:count},
//            "dup_examples":[..]} and, with EXPECT_FILE, "expected","missing","unexpected",
//            "missing_examples","unexpected_examples"
//   check    the summary line, and exit status 1 unless every expected value was read exactly once:
//            no duplicate, none missing and none unexpected (EXPECT_FILE), or without one (`-`) no
//            duplicate and at least N records
// EXPECT_FILE: the expected values, one per line (`-` or absent: none). "complete" is false when the
// reader stopped on IDLE_MS before N records or before the end offsets. KEY=VALUE: more consumer settings.
// Exit status: 0, 1 (check failed), 2 (usage). Compiled by scripts/peers.sh install.

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class TxnReader {
    private static final int EXAMPLES = 10;

    private static String json(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                default:
                    if (c < 0x20) b.append(String.format("\\u%04x", (int) c)); else b.append(c);
            }
        }
        return b.append('"').toString();
    }

    private static String jsonList(Iterable<String> xs) {
        StringBuilder b = new StringBuilder("[");
        int i = 0;
        for (String x : xs) {
            if (i++ > 0) b.append(',');
            b.append(json(x));
        }
        return b.append(']').toString();
    }

    private static void usage(String why) {
        System.err.println("TxnReader: " + why);
        System.err.println("usage: TxnReader BROKERS TOPIC read_committed|read_uncommitted N IDLE_MS values|summary|check"
            + " [EXPECT_FILE|-] [KEY=VALUE..]");
        System.exit(2);
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 6) usage("too few arguments");
        String brokers = args[0], topic = args[1], isolation = args[2], mode = args[5];
        if (!isolation.equals("read_committed") && !isolation.equals("read_uncommitted")) {
            usage("ISOLATION must be read_committed or read_uncommitted, not '" + isolation + "'");
        }
        if (!mode.equals("values") && !mode.equals("summary") && !mode.equals("check")) {
            usage("MODE must be values, summary or check, not '" + mode + "'");
        }
        long n = Long.parseLong(args[3]);
        long idleMs = Long.parseLong(args[4]);
        String expectFile = args.length > 6 && !args[6].contains("=") ? args[6] : "-";
        int extra = args.length > 6 && !args[6].contains("=") ? 7 : 6;

        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        for (int i = extra; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq <= 0) usage("'" + args[i] + "' is not KEY=VALUE");
            p.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }

        boolean values = mode.equals("values");
        Map<String, Integer> seen = new HashMap<>();
        Set<String> dupExamples = new LinkedHashSet<>();
        Map<Integer, Long> perPartition = new TreeMap<>();
        long count = 0;
        boolean atEnd = false;
        StringBuilder buf = new StringBuilder();
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            List<TopicPartition> parts = new ArrayList<>();
            long metaEnd = System.currentTimeMillis() + Math.max(idleMs, 10000);
            while (parts.isEmpty()) {
                List<PartitionInfo> infos = c.partitionsFor(topic, Duration.ofSeconds(10));
                if (infos != null) {
                    for (PartitionInfo pi : infos) parts.add(new TopicPartition(topic, pi.partition()));
                }
                if (parts.isEmpty()) {
                    if (System.currentTimeMillis() > metaEnd) {
                        System.err.println("TxnReader: topic " + topic + " has no partitions (does it exist?)");
                        System.exit(1);
                    }
                    Thread.sleep(200);
                }
            }
            for (TopicPartition tp : parts) perPartition.put(tp.partition(), 0L);
            c.assign(parts);
            c.seekToBeginning(parts);
            long lastRecord = System.currentTimeMillis();
            while (true) {
                ConsumerRecords<byte[], byte[]> recs = c.poll(Duration.ofMillis(200));
                for (ConsumerRecord<byte[], byte[]> r : recs) {
                    String v = r.value() == null ? "" : new String(r.value(), StandardCharsets.UTF_8);
                    count++;
                    perPartition.merge(r.partition(), 1L, Long::sum);
                    if (values) {
                        buf.append(v).append('\n');
                    } else {
                        int k = seen.merge(v, 1, Integer::sum);
                        if (k > 1 && dupExamples.size() < EXAMPLES) dupExamples.add(v);
                    }
                }
                if (values && buf.length() > 0) {
                    System.out.print(buf);
                    System.out.flush();
                    buf.setLength(0);
                }
                long now = System.currentTimeMillis();
                if (!recs.isEmpty()) lastRecord = now;
                if (count >= n) {
                    // The end offsets follow the isolation level (read_committed: the last stable offset).
                    Map<TopicPartition, Long> ends = c.endOffsets(parts, Duration.ofSeconds(10));
                    boolean all = true;
                    for (TopicPartition tp : parts) {
                        if (c.position(tp, Duration.ofSeconds(10)) < ends.get(tp)) {
                            all = false;
                            break;
                        }
                    }
                    if (all) {
                        atEnd = true;
                        break;
                    }
                }
                if (now - lastRecord >= idleMs) break;
            }
        }
        boolean complete = atEnd && count >= n;
        if (values) {
            if (!complete) {
                System.err.println("TxnReader: stopped after " + idleMs + " ms without a record, having read "
                    + count + " of " + n + " records");
            }
            return;
        }

        long distinct = seen.size();
        StringBuilder s = new StringBuilder("{");
        s.append("\"isolation\":").append(json(isolation));
        s.append(",\"count\":").append(count);
        s.append(",\"distinct\":").append(distinct);
        s.append(",\"duplicates\":").append(count - distinct);
        s.append(",\"complete\":").append(complete);
        s.append(",\"partitions\":{");
        int i = 0;
        for (Map.Entry<Integer, Long> e : perPartition.entrySet()) {
            if (i++ > 0) s.append(',');
            s.append('"').append(e.getKey()).append("\":").append(e.getValue());
        }
        s.append('}');
        s.append(",\"dup_examples\":").append(jsonList(dupExamples));
        boolean ok = count == distinct;
        if (!expectFile.equals("-")) {
            List<String> lines = Files.readAllLines(Paths.get(expectFile), StandardCharsets.UTF_8);
            Set<String> expected = new HashSet<>(lines);
            List<String> missing = new ArrayList<>();
            long missingN = 0;
            for (String e : lines) {
                if (!seen.containsKey(e)) {
                    missingN++;
                    if (missing.size() < EXAMPLES) missing.add(e);
                }
            }
            List<String> unexpected = new ArrayList<>();
            long unexpectedN = 0;
            for (String v : seen.keySet()) {
                if (!expected.contains(v)) {
                    unexpectedN++;
                    if (unexpected.size() < EXAMPLES) unexpected.add(v);
                }
            }
            s.append(",\"expected\":").append(expected.size());
            s.append(",\"missing\":").append(missingN);
            s.append(",\"unexpected\":").append(unexpectedN);
            s.append(",\"missing_examples\":").append(jsonList(missing));
            s.append(",\"unexpected_examples\":").append(jsonList(unexpected));
            ok = ok && missingN == 0 && unexpectedN == 0;
        } else {
            ok = ok && count >= n;
        }
        s.append(",\"exactly_once\":").append(ok);
        s.append('}');
        System.out.println(s);
        System.out.flush();
        if (mode.equals("check") && !ok) System.exit(1);
    }
}
