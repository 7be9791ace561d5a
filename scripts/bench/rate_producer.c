/* The fixed-rate input of scripts/bench.sh BENCH_ONLY=latency: RATE records/s, round-robin over the
 * partitions, until SIGTERM; compiled by bench.sh (cc -O2, Debian's librdkafka-dev) into build/bench/latency.
 *
 *   rate_producer BROKERS TOPIC PARTITIONS RATE
 *
 * Each value is "SEQ PRODUCE_TIME_NS " padded with "p" to 199 bytes (SEQ: 10 digits from 0; PRODUCE_TIME_NS:
 * CLOCK_REALTIME when rd_kafka_producev was called), as scripts/bench/rate_producer.py writes them, so 200
 * bytes with the newline a line handler adds. A C program because a Python loop does not hold 100,000
 * records/s on this machine beside a broker and a consumer. librdkafka producer, linger.ms=1 and acks=all
 * (the defaults otherwise). Paced in steps of at most 1 ms: each step sends every record due by then. On
 * SIGTERM it flushes and prints {"sent":N,"seconds":S,"worst_behind":S,"failed":F} (worst_behind: the most a
 * record's send lagged its schedule; failed: delivery reports with an error). Before the clock starts it
 * writes one unstamped "warm-up -" record per partition and waits for its delivery (not in "sent").
 */
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VALUE_BYTES 199

static volatile sig_atomic_t stop = 0;
static long long failed = 0;
static void on_term(int sig) { (void)sig; stop = 1; }

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *op) {
    (void)rk;
    (void)op;
    if (m->err) failed++;
}

static void set(rd_kafka_conf_t *conf, const char *k, const char *v) {
    char err[512];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "rate_producer: %s=%s: %s\n", k, v, err);
        exit(2);
    }
}

int main(int argc, char **argv) {
    char err[512], value[VALUE_BYTES];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    const struct rd_kafka_metadata *md;
    int partitions;
    double rate;
    long long i = 0, t0, worst = 0;
    if (argc != 5 || (partitions = atoi(argv[3])) < 1 || (rate = atof(argv[4])) <= 0) {
        fprintf(stderr, "usage: rate_producer BROKERS TOPIC PARTITIONS RATE\n");
        return 2;
    }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", argv[1]);
    set(conf, "linger.ms", "1");
    set(conf, "acks", "all");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "rate_producer: %s\n", err);
        return 1;
    }
    /* Connected, the topic's leaders known and one record per partition delivered before the clock starts (the
     * first sends wait for all that): those warm-up values carry no stamp, so no latency count takes them. */
    if (rd_kafka_metadata(rk, 1, NULL, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) rd_kafka_metadata_destroy(md);
    memset(value, 'p', sizeof value);
    for (int p = 0; p < partitions; p++)
        rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(argv[2]), RD_KAFKA_V_PARTITION(p), RD_KAFKA_V_VALUE("warm-up -", 9),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (rd_kafka_flush(rk, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "rate_producer: the warm-up records were not delivered within 30 s\n");
        return 1;
    }
    failed = 0;
    t0 = now_ns();
    while (!stop) {
        long long t = now_ns(), due = (long long)((double)(t - t0) * rate / 1e9);
        struct timespec pause = {0, 0};
        for (; i < due && !stop; i++) {
            long long stamp = now_ns(), behind = stamp - (t0 + (long long)((double)i * 1e9 / rate));
            int head = snprintf(value, sizeof value, "%010lld %lld ", i, stamp);
            if (behind > worst) worst = behind;
            value[head] = 'p'; /* snprintf's NUL back to padding */
            while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(argv[2]), RD_KAFKA_V_PARTITION((int32_t)(i % partitions)),
                                     RD_KAFKA_V_VALUE(value, sizeof value), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                     RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(rk, 10);
        }
        rd_kafka_poll(rk, 0);
        /* sleep until the next record is due, at most 1 ms */
        {
            long long next = t0 + (long long)((double)i * 1e9 / rate) - now_ns();
            if (next > 1000000) next = 1000000;
            if (next > 0) {
                pause.tv_nsec = next;
                nanosleep(&pause, NULL);
            }
        }
    }
    rd_kafka_flush(rk, 30000);
    printf("{\"sent\":%lld,\"seconds\":%.3f,\"worst_behind\":%.6f,\"failed\":%lld}\n", i,
           (now_ns() - t0) / 1e9, worst / 1e9, failed);
    rd_kafka_destroy(rk);
    return 0;
}
