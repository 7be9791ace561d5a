/* The latency histogram of scripts/bench.sh BENCH_ONLY=latency, shared by latency_sink.c and
 * rdkafka_consumer.c (franz/main.go and rdkafka_consumer.py keep the same buckets; latency.py reads them).
 *
 * A record's value starts "SEQ PRODUCE_TIME_NS " (rate_producer.c). Its latency is the receiving clock
 * (CLOCK_REALTIME, the producer's clock: one machine) minus that stamp, in µs, counted in buckets of at most
 * 1% width: 10 µs below 10 ms, 100 µs below 100 ms, 1 ms below 1 s, 10 ms below 100 s, one bucket above.
 * The counts live in DIR/lat-PID.bin, a shared file mapping of LAT_BUCKETS little-endian u64 counters (bucket b's
 * lower bound: latency.py's lower_us), updated in place by every lat_record: a counted record is in the page cache at
 * once, so a process killed with SIGKILL (the kill runs; kswarm's guard SIGKILLs a dead worker's handler)
 * leaves every record it counted. The reader sums the counters; the file has no total of its own.
 */
#ifndef LATENCY_HIST_H
#define LATENCY_HIST_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#define LAT_BUCKETS 12701

static unsigned long long lat_private[LAT_BUCKETS];
static unsigned long long *lat_counts = lat_private; /* the mapping once lat_open ran */

/* Maps DIR/lat-PID.bin (created zeroed); 0 when done. Before it (or without a DIR) counts stay private. */
static int lat_open(const char *dir) {
    char path[4096];
    int fd;
    void *m;
    snprintf(path, sizeof path, "%s/lat-%d.bin", dir, (int)getpid());
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)sizeof lat_private) != 0) return -1;
    m = mmap(NULL, sizeof lat_private, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return -1;
    lat_counts = m;
    return 0;
}

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
}

#endif
