/* One native librdkafka consumer-group member for scripts/bench.sh (BENCH_ONLY=strong): C against the
 * system's librdkafka (Debian's librdkafka-dev), compiled by bench.sh with cc -O2 into build/bench/rdkafka-c.
 *
 *   rdkafka_consumer BROKERS TOPIC GROUP [latency DIR]
 *
 * librdkafka's defaults except what the bench needs: group.id, auto.offset.reset=earliest and the
 * partition-EOF events that let it report promptly when it has caught up; one rd_kafka_consumer_poll per
 * message, as a C application reads. Output, one line each (t in Unix seconds), the bench's protocol:
 *   {"pid":P,"assigned":[..],"t":t}  on every assignment change (empty list: revoked)
 *   {"pid":P,"first":t} at the first record, then {"pid":P,"n":N,"last":t} every 0.25 s or 2,000 records
 *   while records come (the harness times the first 10,000 records from these), at each partition EOF and
 *   when a poll of 0.2 s comes back empty
 * SIGTERM closes the consumer (commit and leave).
 * BENCH_RDKAFKA_CONFIG=FILE (optional, as for rdkafka_consumer.py): librdkafka properties (key=value lines,
 * # or ! comments) set on top of the above, e.g. security.protocol=SASL_SSL, sasl.*, ssl.ca.location.
 * latency DIR (BENCH_ONLY=latency): each record's produce-to-poll latency into latency_hist.h's
 * histogram, written to DIR/lat-PID.json every 0.5 s, when a poll comes back empty and at exit.
 */
#include "latency_hist.h"
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t stop = 0;
static void on_term(int sig) { (void)sig; stop = 1; }

static double now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec / 1e6;
}

static void print_assignment(rd_kafka_t *rk) {
    rd_kafka_topic_partition_list_t *a = NULL;
    int i;
    printf("{\"pid\":%d,\"assigned\":[", (int)getpid());
    if (rd_kafka_assignment(rk, &a) == RD_KAFKA_RESP_ERR_NO_ERROR && a) {
        for (i = 0; i < a->cnt; i++) printf(i ? ",%d" : "%d", (int)a->elems[i].partition);
        rd_kafka_topic_partition_list_destroy(a);
    }
    printf("],\"t\":%.6f}\n", now());
    fflush(stdout);
}

/* Eager or cooperative, whichever assignor the group chose. */
static void rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *op) {
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    (void)op;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (cooperative) rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        else rd_kafka_assign(rk, parts);
    } else {
        if (cooperative) rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
        else rd_kafka_assign(rk, NULL);
    }
    print_assignment(rk);
}

static void set(rd_kafka_conf_t *conf, const char *k, const char *v) {
    char err[512];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "rdkafka_consumer: %s=%s: %s\n", k, v, err);
        exit(2);
    }
}

/* BENCH_RDKAFKA_CONFIG: each key=value line of the file (blank lines and # or ! comments skipped). */
static void set_from_file(rd_kafka_conf_t *conf, const char *path) {
    char line[1024];
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "rdkafka_consumer: cannot read BENCH_RDKAFKA_CONFIG=%s\n", path);
        exit(2);
    }
    while (fgets(line, sizeof line, f)) {
        char *k = line, *eq, *end;
        while (*k == ' ' || *k == '\t') k++;
        if (*k == '#' || *k == '!' || *k == '\n' || *k == 0) continue;
        if (!(eq = strchr(k, '='))) continue;
        *eq = 0;
        end = eq + 1 + strcspn(eq + 1, "\r\n");
        *end = 0;
        set(conf, k, eq + 1);
    }
    fclose(f);
}

int main(int argc, char **argv) {
    char err[512];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *topics;
    long long n = 0, reported_n = 0, stamped_n = 0;
    double first = 0, last = 0, reported = 0;
    int pid = (int)getpid();
    int latency = argc == 6;
    if (argc != 4 && !(argc == 6 && strcmp(argv[4], "latency") == 0)) {
        fprintf(stderr, "usage: rdkafka_consumer BROKERS TOPIC GROUP [latency DIR]\n");
        return 2;
    }
    if (latency && lat_open(argv[5]) != 0) {
        fprintf(stderr, "rdkafka_consumer: cannot map %s/lat-PID.bin\n", argv[5]);
        return 1;
    }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", argv[1]);
    set(conf, "group.id", argv[3]);
    set(conf, "auto.offset.reset", "earliest");
    set(conf, "enable.partition.eof", "true");
    if (getenv("BENCH_RDKAFKA_CONFIG")) set_from_file(conf, getenv("BENCH_RDKAFKA_CONFIG"));
    rd_kafka_conf_set_rebalance_cb(conf, rebalance);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "rdkafka_consumer: %s\n", err);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);
    topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, argv[2], RD_KAFKA_PARTITION_UA);
    if (rd_kafka_subscribe(rk, topics)) {
        fprintf(stderr, "rdkafka_consumer: subscribe to %s failed\n", argv[2]);
        return 1;
    }
    rd_kafka_topic_partition_list_destroy(topics);
    while (!stop) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        int flush = 0;
        double t;
        if (!m) {
            flush = 1;
        } else {
            if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                n++;
                if (latency) lat_record(m->payload, m->len, lat_now_ns());
                /* the clock once per 256 records: a poll costs far less than gettimeofday */
                if (first == 0 || (n & 255) == 0) {
                    last = now();
                    stamped_n = n;
                    if (first == 0) {
                        first = last;
                        printf("{\"pid\":%d,\"first\":%.6f}\n", pid, first);
                        fflush(stdout);
                    }
                }
            } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                /* the partition's last record came with the fetch answer just handed out */
                if (stamped_n != n) {
                    last = now();
                    stamped_n = n;
                }
                flush = 1;
            }
            rd_kafka_message_destroy(m);
        }
        if (n == reported_n) continue;
        t = now();
        if (flush || t - reported > 0.25 || n - reported_n >= 2000) {
            printf("{\"pid\":%d,\"n\":%lld,\"last\":%.6f}\n", pid, n, flush ? last : t);
            fflush(stdout);
            reported = t;
            reported_n = n;
        }
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return 0;
}
