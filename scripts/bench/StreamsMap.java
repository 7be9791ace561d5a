// The Kafka Streams peer of the pipeline benchmark (scripts/bench.sh, BENCH_ONLY=pipeline; issue 29):
// a one-to-one map from topic IN to topic OUT with processing.guarantee=exactly_once_v2, the same
// transform as the kswarm handler `sed -u s/^/x/` (the value with "x" in front).
//
//   java -cp build/bench/streams:build/bench/streams/libs/* StreamsMap BROKERS IN OUT APP_ID COMMIT_MS THREADS
//        [KEY=VALUE..]
//
// APP_ID is the application.id (the consumer group and the transactional id prefix), COMMIT_MS the
// commit.interval.ms (Streams' default under exactly_once_v2 is 100), THREADS num.stream.threads.
// KEY=VALUE arguments are more Streams settings (e.g. processing.guarantee=at_least_once). Everything
// else is Kafka Streams' default: a fresh group reads IN from the earliest offset. State directory: a
// temp dir, removed at exit (the topology is stateless).
// stdout: {"state":"RUNNING","t":UNIX_SECONDS} on every state change (the harness waits for RUNNING);
// SIGTERM closes the app (commits the open transactions) and prints {"closed":true}.
// Compiled by scripts/bench.sh against the jars of scripts/bench/streams/pom.xml.

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.stream.Stream;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;

public class StreamsMap {
    private static synchronized void out(String line) {
        System.out.println(line);
        System.out.flush();
    }

    private static double now() {
        return System.currentTimeMillis() / 1000.0;
    }

    private static void removeTree(Path dir) {
        try (Stream<Path> s = Files.walk(dir)) {
            s.sorted(Comparator.reverseOrder()).map(Path::toFile).forEach(File::delete);
        } catch (IOException e) {
            // best effort
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 6) {
            System.err.println("usage: StreamsMap BROKERS IN OUT APP_ID COMMIT_MS THREADS [KEY=VALUE..]");
            System.exit(2);
        }
        String brokers = args[0], in = args[1], outTopic = args[2], appId = args[3];
        long commitMs = Long.parseLong(args[4]);
        int threads = Integer.parseInt(args[5]);
        Path stateDir = Files.createTempDirectory("kswarm-streams-");

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.toString(commitMs));
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.toString(threads));
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        for (int i = 6; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq <= 0) {
                System.err.println("StreamsMap: '" + args[i] + "' is not KEY=VALUE");
                System.exit(2);
            }
            p.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }

        byte[] prefix = {'x'};
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(in, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
            .mapValues(v -> {
                if (v == null) {
                    return prefix.clone();
                }
                byte[] r = new byte[v.length + 1];
                r[0] = 'x';
                System.arraycopy(v, 0, r, 1, v.length);
                return r;
            })
            .to(outTopic, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));

        KafkaStreams streams = new KafkaStreams(builder.build(), p);
        CountDownLatch done = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            out("{\"state\":\"" + now + "\",\"t\":" + now() + "}");
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                done.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(30));
            out("{\"closed\":true}");
            removeTree(stateDir);
            done.countDown();
        }));
        streams.start();
        done.await();
        if (streams.state() == KafkaStreams.State.ERROR) {
            System.err.println("StreamsMap: the application went into state ERROR");
            streams.close(Duration.ofSeconds(10));
            removeTree(stateDir);
            System.exit(1);
        }
    }
}
