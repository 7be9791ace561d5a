/* The handler of scripts/bench.sh BENCH_ONLY=latency: reads records, one value per line, from stdin and
 * counts each one's produce-to-handler latency (latency_hist.h); compiled by bench.sh into build/bench/latency.
 *
 *   latency_sink DIR [--ack]
 *
 * --ack: the `kswarm run --exec` protocol, one line "ok" per record on stdout, written for all the complete
 * lines of each read at once (a handler that answers at once, as a fast one does). Without it: a reader of
 * `kswarm run`'s stdout. Counts go straight into DIR/lat-PID.bin (latency_hist.h), so a SIGKILL loses none;
 * it ends at end of input or SIGTERM.
 */
#include "latency_hist.h"
#include <poll.h>
#include <signal.h>

static volatile sig_atomic_t stop = 0;
static void on_term(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
    static char buf[1 << 20], acks[1 << 16];
    size_t have = 0;
    int ack;
    struct sigaction sa;
    if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "--ack") != 0)) {
        fprintf(stderr, "usage: latency_sink DIR [--ack]\n");
        return 2;
    }
    if (lat_open(argv[1]) != 0) {
        fprintf(stderr, "latency_sink: cannot map %s/lat-PID.bin\n", argv[1]);
        return 1;
    }
    ack = argc == 3;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    while (!stop) {
        struct pollfd in = {0, POLLIN, 0};
        ssize_t got;
        size_t start = 0, i, nacks = 0;
        long long t;
        if (poll(&in, 1, 200) == 0) continue;
        got = read(0, buf + have, sizeof buf - have);
        if (got <= 0) break;
        t = lat_now_ns();
        have += (size_t)got;
        for (i = 0; i < have; i++) {
            if (buf[i] != '\n') continue;
            lat_record(buf + start, i - start, t);
            start = i + 1;
            if (ack) {
                if (nacks + 3 > sizeof acks) {
                    if (write(1, acks, nacks) < 0) return 1;
                    nacks = 0;
                }
                memcpy(acks + nacks, "ok\n", 3);
                nacks += 3;
            }
        }
        if (nacks && write(1, acks, nacks) < 0) return 1;
        memmove(buf, buf + start, have - start);
        have -= start;
        if (have == sizeof buf) have = 0; /* a line over 1 MiB: not a bench record */
    }
    return 0;
}
