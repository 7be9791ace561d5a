// One Java KafkaShareConsumer (kafka-clients) process for scripts/bench.sh (BENCH_ONLY=share): share group
// consumption with no handler work, compiled by bench.sh with javac into build/bench/java-extra.
//
//   java -cp build/bench/java-extra:build/kafka/libs/* JavaShareConsumer BROKERS TOPIC GROUP
//
// The client's defaults (implicit acknowledgement: the records of a poll are accepted with the next poll) and
// byte-array deserializers. Before subscribing it sets the group's share.auto.offset.reset=earliest (Admin,
// incrementalAlterConfigs on the GROUP resource; a share group starts at the latest offset otherwise), as
// `kswarm run --group-protocol share --from earliest` does. Output, one line each (t in Unix seconds):
//   {"pid":P,"first":t} at the first record, then {"pid":P,"n":N,"last":t} at most every 0.25 s while records
//   come and once a poll comes back empty (caught up)
// SIGTERM closes the consumer (acknowledges what it holds and leaves).

import java.io.BufferedOutputStream;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaShareConsumer;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class JavaShareConsumer {
    private static final PrintStream OUT =
        new PrintStream(new BufferedOutputStream(new FileOutputStream(FileDescriptor.out), 1 << 16), false,
            StandardCharsets.UTF_8);
    private static final long PID = ProcessHandle.current().pid();

    private static double now() {
        return System.currentTimeMillis() / 1000.0;
    }

    private static String t(double s) {
        return String.format(Locale.ROOT, "%.3f", s);
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: JavaShareConsumer BROKERS TOPIC GROUP");
            System.exit(2);
        }
        String brokers = args[0], topic = args[1], group = args[2];
        Properties a = new Properties();
        a.put("bootstrap.servers", brokers);
        try (Admin admin = Admin.create(a)) {
            ConfigResource res = new ConfigResource(ConfigResource.Type.GROUP, group);
            AlterConfigOp op = new AlterConfigOp(new ConfigEntry("share.auto.offset.reset", "earliest"),
                AlterConfigOp.OpType.SET);
            admin.incrementalAlterConfigs(Map.of(res, List.of(op))).all().get();
        }
        Properties p = new Properties();
        p.put("bootstrap.servers", brokers);
        p.put("group.id", group);
        p.put("key.deserializer", ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", ByteArrayDeserializer.class.getName());
        KafkaShareConsumer<byte[], byte[]> consumer = new KafkaShareConsumer<>(p);
        AtomicBoolean stop = new AtomicBoolean(false);
        Thread main = Thread.currentThread();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            stop.set(true);
            consumer.wakeup();
            try {
                main.join(10000);
            } catch (InterruptedException e) {
                // exiting anyway
            }
        }));
        long n = 0, reportedN = 0;
        double first = 0, last = 0, reported = 0;
        try {
            consumer.subscribe(Collections.singletonList(topic));
            while (!stop.get()) {
                ConsumerRecords<byte[], byte[]> records;
                try {
                    records = consumer.poll(Duration.ofMillis(200));
                } catch (WakeupException e) {
                    break;
                }
                int got = records.count();
                double t = now();
                n += got;
                if (got > 0) {
                    last = t;
                    if (first == 0) {
                        first = t;
                        OUT.print("{\"pid\":" + PID + ",\"first\":" + t(first) + "}\n");
                        OUT.flush();
                    }
                }
                if (n != reportedN && (got == 0 || t - reported > 0.25)) {
                    OUT.print("{\"pid\":" + PID + ",\"n\":" + n + ",\"last\":" + t(last) + "}\n");
                    OUT.flush();
                    reported = t;
                    reportedN = n;
                }
            }
        } finally {
            consumer.close();
        }
    }
}
