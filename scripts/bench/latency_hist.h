/* The latency histogram of scripts/bench.sh BENCH_ONLY=latency, shared by latency_sink.c and
 * rdkafka_consumer.c (franz/main.go and rdkafka_consumer.py keep the same buckets; latency.py reads them).
 *
 * A record's value starts "SEQ PRODUCE_TIME_NS " (rate_producer.c). Its latency is the receiving clock
 * (CLOCK_REALTIME, the producer's clock: one machine) minus that stamp, in µs, counted in buckets of at most
 * 1% width: 10 µs below 10 ms, 100 µs below 100 ms, 1 ms below 1 s, 10 ms below 100 s, one bucket above.
 * lat_dump() (each 0.5 s while records come, and lat_idle() when a wait for records came back empty) writes {"pid":P,"n":N,"b":[[LOWER_BOUND_US,COUNT],..]} to DIR/lat-PID.json through a temporary
 * file and rename, so a reader never sees half a file and a process killed with SIGKILL leaves its last dump.
 */
#ifndef LATENCY_HIST_H
#define LATENCY_HIST_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LAT_BUCKETS 12701

static unsigned long long lat_counts[LAT_BUCKETS];
static unsigned long long lat_n = 0, lat_dumped_n = 0;
static const char *lat_dir = NULL;

static long long lat_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int lat_bucket(long long us) {
    if (us < 0) us = 0;
    if (us < 10000) return (int)(us / 10);
    if (us < 100000) return 1000 + (int)((us - 10000) / 100);
    if (us < 1000000) return 1900 + (int)((us - 100000) / 1000);
    if (us < 100000000) return 2800 + (int)((us - 1000000) / 10000);
    return LAT_BUCKETS - 1;
}

static long long lat_lower_us(int b) {
    if (b < 1000) return (long long)b * 10;
    if (b < 1900) return 10000 + (long long)(b - 1000) * 100;
    if (b < 2800) return 100000 + (long long)(b - 1900) * 1000;
    return 1000000 + (long long)(b - 2800) * 10000;
}

/* The stamp of a value "SEQ STAMP ...", or -1 when it has none. */
static long long lat_stamp(const char *v, size_t len) {
    size_t i = 0;
    long long s = 0;
    while (i < len && v[i] != ' ') i++;
    if (++i >= len) return -1;
    if (v[i] < '0' || v[i] > '9') return -1;
    while (i < len && v[i] >= '0' && v[i] <= '9') s = s * 10 + (v[i++] - '0');
    return s;
}

static void lat_record(const char *v, size_t len, long long now_ns) {
    long long s = lat_stamp(v, len);
    if (s < 0) return;
    lat_counts[lat_bucket((now_ns - s) / 1000)]++;
    lat_n++;
}

static void lat_dump(void) {
    char path[4096], tmp[4200];
    FILE *f;
    int b, first = 1;
    if (!lat_dir) return;
    snprintf(path, sizeof path, "%s/lat-%d.json", lat_dir, (int)getpid());
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f) return;
    fprintf(f, "{\"pid\":%d,\"n\":%llu,\"b\":[", (int)getpid(), lat_n);
    for (b = 0; b < LAT_BUCKETS; b++) {
        if (!lat_counts[b]) continue;
        fprintf(f, first ? "[%lld,%llu]" : ",[%lld,%llu]", lat_lower_us(b), lat_counts[b]);
        first = 0;
    }
    fprintf(f, "]}\n");
    fclose(f);
    rename(tmp, path);
    lat_dumped_n = lat_n;
}

/* No record came: the latest counts out now, so the bench sees the last ones without waiting for more. */
static void lat_idle(void) {
    if (lat_n != lat_dumped_n) lat_dump();
}
#endif
