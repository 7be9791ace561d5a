// One Java KafkaConsumer (kafka-clients) process for scripts/bench.sh; compiled by bench.sh with javac
// into build/bench/java (no Gradle or Maven build), run against the jars in build/kafka/libs.
//
//   java -cp build/bench/java:build/kafka/libs/* JavaConsumer BROKERS TOPIC GROUP count|failover|latency DIR [KEY=VALUE..]
//
// The client's default settings except what the bench needs: group.id, auto.offset.reset=earliest and
// byte-array deserializers (so the classic group protocol, range + cooperative-sticky assignors, a 45 s
// session timeout, auto commit every 5 s); KEY=VALUE arguments are more consumer settings (on tansu the
// bench passes metadata.cluster.check.enable=false: tansu 0.6 misreads the ApiVersions v5 request that
// check brings and drops the connection). Output, one line each (t in Unix seconds):
//   {"pid":P,"assigned":[..],"t":t}  on every assignment change (empty list: revoked)
//   count:    {"pid":P,"first":t} at the first record, then {"pid":P,"n":N,"last":t} at most every
//             0.25 s while records come and once a poll comes back empty (caught up)
//   failover: "pid partition offset" per record
//   latency DIR (BENCH_ONLY=latency): count's lines, and each record's produce-to-poll latency in the buckets of
//             scripts/bench/latency_hist.h, counted in DIR/lat-PID.bin (a shared file mapping) as they come
// SIGTERM closes the consumer (commit and LeaveGroup).

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Instant;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Collection;
import java.util.Collections;
import java.util.Locale;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class JavaConsumer {
    private static final PrintStream OUT =
        new PrintStream(new BufferedOutputStream(new FileOutputStream(FileDescriptor.out), 1 << 16), false,
            StandardCharsets.UTF_8);
    private static final long PID = ProcessHandle.current().pid();
    private static final TreeSet<Integer> OWNED = new TreeSet<>();

    private static double now() {
        return System.currentTimeMillis() / 1000.0;
    }

    private static String t(double s) {
        return String.format(Locale.ROOT, "%.3f", s);
    }

    private static void assignment() {
        StringBuilder sb = new StringBuilder();
        for (int p : OWNED) {
            if (sb.length() > 0) sb.append(',');
            sb.append(p);
        }
        OUT.print("{\"pid\":" + PID + ",\"assigned\":[" + sb + "],\"t\":" + t(now()) + "}\n");
        OUT.flush();
    }

    /** latency_hist.h's buckets (latency.py merges every contender's files alike). */
    static final class Hist {
        /** DIR/lat-PID.bin, a shared mapping of 12,701 little-endian u64 counters: a SIGKILL loses no count. */
        final java.nio.LongBuffer counts;

        Hist(String dir) {
            try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(
                    Path.of(dir).resolve("lat-" + PID + ".bin"), java.nio.file.StandardOpenOption.CREATE,
                    java.nio.file.StandardOpenOption.READ, java.nio.file.StandardOpenOption.WRITE,
                    java.nio.file.StandardOpenOption.TRUNCATE_EXISTING)) {
                counts = ch.map(java.nio.channels.FileChannel.MapMode.READ_WRITE, 0, 12701L * 8)
                        .order(java.nio.ByteOrder.LITTLE_ENDIAN).asLongBuffer();
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        }

        static int bucket(long us) {
            if (us < 0) us = 0;
            if (us < 10000) return (int) (us / 10);
            if (us < 100000) return 1000 + (int) ((us - 10000) / 100);
            if (us < 1000000) return 1900 + (int) ((us - 100000) / 1000);
            if (us < 100000000) return 2800 + (int) ((us - 1000000) / 10000);
            return 12700;
        }

        void record(byte[] v, long nowNs) {
            int i = 0;
            long s = 0;
            if (v == null) return;
            while (i < v.length && v[i] != ' ') i++;
            if (++i >= v.length || v[i] < '0' || v[i] > '9') return;
            while (i < v.length && v[i] >= '0' && v[i] <= '9') s = s * 10 + (v[i++] - '0');
            int b = bucket((nowNs - s) / 1000);
            counts.put(b, counts.get(b) + 1);
        }
    }

    public static void main(String[] args) {
        if (args.length < 4 || (args[3].equals("latency") && args.length < 5)) {
            System.err.println("usage: JavaConsumer BROKERS TOPIC GROUP count|failover|latency DIR [KEY=VALUE..]");
            System.exit(2);
        }
        String brokers = args[0], topic = args[1], group = args[2];
        boolean failover = args[3].equals("failover");
        Hist lat = args[3].equals("latency") ? new Hist(args[4]) : null;
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        for (int i = lat == null ? 4 : 5; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq <= 0) {
                System.err.println("JavaConsumer: expected KEY=VALUE, got " + args[i]);
                System.exit(2);
            }
            props.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props);

        AtomicBoolean stop = new AtomicBoolean();
        Thread main = Thread.currentThread();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            stop.set(true);
            consumer.wakeup();
            try {
                main.join(10_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }));

        consumer.subscribe(Collections.singletonList(topic), new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                for (TopicPartition tp : parts) OWNED.remove(tp.partition());
                assignment();
            }

            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                for (TopicPartition tp : parts) OWNED.add(tp.partition());
                assignment();
            }

            @Override
            public void onPartitionsLost(Collection<TopicPartition> parts) {
                onPartitionsRevoked(parts);
            }
        });

        long n = 0, reportedN = 0, bytes = 0;
        double first = -1, last = 0, reported = 0;
        StringBuilder sb = new StringBuilder(1 << 16);
        try {
            while (!stop.get()) {
                ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(200));
                double now = now();
                int got = 0;
                if (failover) {
                    sb.setLength(0);
                    for (ConsumerRecord<byte[], byte[]> r : records) {
                        sb.append(PID).append(' ').append(r.partition()).append(' ').append(r.offset()).append('\n');
                    }
                    if (sb.length() > 0) {
                        OUT.print(sb);
                        OUT.flush();
                    }
                    continue;
                }
                long nowNs = 0;
                if (lat != null) {
                    Instant i = Instant.now();
                    nowNs = i.getEpochSecond() * 1_000_000_000L + i.getNano();
                }
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    byte[] v = r.value();
                    bytes += v == null ? 0 : v.length;
                    got++;
                    if (lat != null) lat.record(v, nowNs);
                }
                if (got > 0) {
                    if (first < 0) {
                        first = now;
                        OUT.print("{\"pid\":" + PID + ",\"first\":" + t(first) + "}\n");
                        OUT.flush();
                    }
                    n += got;
                    last = now;
                }
                if (n != reportedN && (got == 0 || now - reported > 0.25)) {
                    OUT.print("{\"pid\":" + PID + ",\"n\":" + n + ",\"last\":" + t(last) + ",\"bytes\":" + bytes + "}\n");
                    OUT.flush();
                    reported = now;
                    reportedN = n;
                }
            }
        } catch (WakeupException e) {
            // SIGTERM
        } finally {
            consumer.close();
            OUT.flush();
        }
    }
}
