// A Java KafkaShareConsumer (kafka-clients) peer for the share group tests (tests/share.rs).
//
//   java -cp build/java-share-peer:build/kafka/libs/* JavaShareMember BROKERS TOPIC GROUP OUTFILE [KEY=VALUE..]
//
// Joins share group GROUP, subscribed to TOPIC, with explicit acknowledgement: each record is appended to
// OUTFILE as one line {"partition":P,"offset":O,"value":"...","delivery":N} (written through at once) and
// only then ACCEPTed; commitSync after each poll. Prints {"polled":N} on stdout after each non-empty poll
// and closes (leaving the group) when its stdin closes, printing {"closed":true}. KEY=VALUE arguments
// after OUTFILE are more consumer settings. Compiled by scripts/peers.sh install.

import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Collections;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.consumer.AcknowledgeType;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaShareConsumer;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class JavaShareMember {
    private static synchronized void out(String line) {
        System.out.println(line);
        System.out.flush();
    }

    private static void jsonString(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
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
        if (args.length < 4) {
            System.err.println("usage: JavaShareMember BROKERS TOPIC GROUP OUTFILE [KEY=VALUE..]");
            System.exit(2);
        }
        String brokers = args[0], topic = args[1], group = args[2], outFile = args[3];
        Properties p = new Properties();
        p.put("bootstrap.servers", brokers);
        p.put("group.id", group);
        p.put("client.id", "java-share-peer");
        p.put("share.acknowledgement.mode", "explicit");
        p.put("key.deserializer", ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", ByteArrayDeserializer.class.getName());
        for (int i = 4; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            p.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        KafkaShareConsumer<byte[], byte[]> consumer = new KafkaShareConsumer<>(p);
        AtomicBoolean stop = new AtomicBoolean(false);
        Thread watcher = new Thread(() -> {
            try {
                InputStream in = System.in;
                while (in.read() >= 0) { }
            } catch (IOException e) {
                // stdin gone: stop as well
            }
            stop.set(true);
            consumer.wakeup();
        });
        watcher.setDaemon(true);
        watcher.start();
        try (FileOutputStream f = new FileOutputStream(outFile, true)) {
            consumer.subscribe(Collections.singletonList(topic));
            out("{\"subscribed\":true}");
            while (!stop.get()) {
                ConsumerRecords<byte[], byte[]> records;
                try {
                    records = consumer.poll(Duration.ofMillis(200));
                } catch (WakeupException e) {
                    break;
                }
                int n = 0;
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    StringBuilder sb = new StringBuilder();
                    sb.append("{\"partition\":").append(r.partition()).append(",\"offset\":").append(r.offset())
                        .append(",\"value\":");
                    jsonString(sb, r.value() == null ? "" : new String(r.value(), StandardCharsets.UTF_8));
                    sb.append(",\"delivery\":").append(r.deliveryCount().orElse((short) 0)).append("}\n");
                    f.write(sb.toString().getBytes(StandardCharsets.UTF_8));
                    f.flush();
                    consumer.acknowledge(r, AcknowledgeType.ACCEPT);
                    n++;
                }
                if (n > 0) {
                    try {
                        consumer.commitSync();
                    } catch (WakeupException e) {
                        consumer.commitSync();
                        break;
                    }
                    out("{\"polled\":" + n + "}");
                }
            }
        } finally {
            consumer.close();
            out("{\"closed\":true}");
        }
    }
}
