// A Java KafkaConsumer (kafka-clients) peer for the interop tests (tests/interop.rs).
//
//   java -cp build/java-peer:build/kafka/libs/* JavaMember BROKERS TOPIC GROUP ASSIGNOR OUTFILE [KEY=VALUE..]
//
// Joins GROUP with the classic protocol and ASSIGNOR (range | roundrobin), reads TOPIC from the
// earliest offset with auto commit off, appends one line {"partition":P,"offset":O,"value":"..."}
// per record to OUTFILE (written through at once), commits synchronously after each poll batch,
// prints {"assigned":[...]} / {"revoked":[...]} on stdout on every assignment change, and closes
// (LeaveGroup) when its stdin closes, printing {"closed":true}. KEY=VALUE arguments after OUTFILE are
// more consumer settings.
// Compiled by scripts/peers.sh install.

import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.consumer.RoundRobinAssignor;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class JavaMember {
    private static synchronized void out(String line) {
        System.out.println(line);
        System.out.flush();
    }

    private static String partitionsJson(String key, Collection<TopicPartition> parts, String topic) {
        List<Integer> ps = new ArrayList<>();
        for (TopicPartition tp : parts) {
            if (tp.topic().equals(topic)) {
                ps.add(tp.partition());
            }
        }
        Collections.sort(ps);
        StringBuilder sb = new StringBuilder("{\"" + key + "\":[");
        for (int i = 0; i < ps.size(); i++) {
            if (i > 0) sb.append(',');
            sb.append(ps.get(i));
        }
        return sb.append("]}").toString();
    }

    private static void jsonString(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                default:
                    if (c < 0x20) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
            }
        }
        sb.append('"');
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 5) {
            System.err.println("usage: JavaMember BROKERS TOPIC GROUP range|roundrobin|consumer:uniform|consumer:range OUTFILE [KEY=VALUE..]");
            System.exit(2);
        }
        String brokers = args[0], topic = args[1], group = args[2], assignor = args[3], outfile = args[4];
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        if (assignor.startsWith("consumer:")) {
            // KIP-848: the broker assigns (uniform or range) and sets the session.
            p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
            p.put(ConsumerConfig.GROUP_REMOTE_ASSIGNOR_CONFIG, assignor.substring("consumer:".length()));
        } else {
            String strategy;
            switch (assignor) {
                case "range": strategy = RangeAssignor.class.getName(); break;
                case "roundrobin": strategy = RoundRobinAssignor.class.getName(); break;
                default:
                    System.err.println("JavaMember: unknown assignor " + assignor + "; use range, roundrobin, consumer:uniform or consumer:range");
                    System.exit(2);
                    return;
            }
            p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
            p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, strategy);
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "6000");
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "300");
        }
        // The rebalance timeout of a member.
        p.put(ConsumerConfig.MAX_POLL_INTERVAL_MS_CONFIG, "30000");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.METADATA_MAX_AGE_CONFIG, "1000");
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "java-peer");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        // More consumer settings after OUTFILE, e.g. metadata.cluster.check.enable=false for tansu.
        for (int i = 5; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq <= 0) {
                System.err.println("JavaMember: " + args[i] + " is not KEY=VALUE");
                System.exit(2);
            }
            p.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }

        AtomicBoolean stop = new AtomicBoolean(false);
        KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p);

        Thread watcher = new Thread(() -> {
            byte[] buf = new byte[4096];
            InputStream in = System.in;
            try {
                while (in.read(buf) >= 0) {
                    // Only the end of stdin matters.
                }
            } catch (IOException e) {
                // Treat a broken stdin like a closed one.
            }
            stop.set(true);
            c.wakeup();
        });
        watcher.setDaemon(true);
        watcher.start();

        // The callbacks name what changed: everything under the classic (eager)
        // protocol, only the partitions added or taken away under the consumer
        // protocol. "assigned" always prints the whole set owned now.
        Set<TopicPartition> owned = new HashSet<>();
        c.subscribe(Collections.singletonList(topic), new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                owned.removeAll(parts);
                out(partitionsJson("revoked", parts, topic));
            }

            @Override
            public void onPartitionsLost(Collection<TopicPartition> parts) {
                onPartitionsRevoked(parts);
            }

            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                owned.addAll(parts);
                out(partitionsJson("assigned", owned, topic));
            }
        });

        try (FileOutputStream f = new FileOutputStream(outfile, true)) {
            while (!stop.get()) {
                ConsumerRecords<byte[], byte[]> recs;
                try {
                    recs = c.poll(Duration.ofMillis(100));
                } catch (WakeupException e) {
                    break;
                }
                if (recs.isEmpty()) {
                    continue;
                }
                Map<TopicPartition, OffsetAndMetadata> commit = new HashMap<>();
                StringBuilder sb = new StringBuilder();
                for (ConsumerRecord<byte[], byte[]> r : recs) {
                    sb.setLength(0);
                    sb.append("{\"partition\":").append(r.partition())
                        .append(",\"offset\":").append(r.offset()).append(",\"value\":");
                    String v = r.value() == null ? "" : new String(r.value(), StandardCharsets.UTF_8);
                    jsonString(sb, v);
                    sb.append("}\n");
                    // FileOutputStream is unbuffered: each record is one write(2), in the file at once.
                    f.write(sb.toString().getBytes(StandardCharsets.UTF_8));
                    commit.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                try {
                    c.commitSync(commit);
                } catch (WakeupException e) {
                    // stdin closed during the commit: commit once more, then leave.
                    c.commitSync(commit);
                    break;
                } catch (KafkaException e) {
                    // A rebalance took the partitions away: their next owner gets these records again.
                    System.err.println("JavaMember: commit failed: " + e);
                }
            }
        }
        c.close(CloseOptions.timeout(Duration.ofSeconds(10)).withGroupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP));
        out("{\"closed\":true}");
    }
}
