/* restart.c - the restart benchmark's child and channel reader.
 *
 *   restart crasher [LOG K LIVE_MS]   appends "start I T" to LOG (T: CLOCK_MONOTONIC ns),
 *                                     writes "hello I T" to stdout, lives LIVE_MS, then
 *                                     appends "crash I T" and exits 1; the K-th start
 *                                     (I = K) stays up instead. I counts the lines of LOG.crashes.
 *   restart sink [LOG]                for every line on stdin appends "recv T LINE" to LOG.
 *
 * Without them (a run script that is a symlink, as under s6) they come from
 * the file crash.conf ("LOG K LIVE_MS") or sink.conf ("LOG") in the working directory.
 * Build: cc -O2 -o restart restart.c */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void append(const char *path, const char *line) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0 || write(fd, line, strlen(line)) < 0) _exit(2);
    close(fd);
}

static int conf(const char *file, char *log, long *k, long *live) {
    FILE *f = fopen(file, "r");
    if (!f) return -1;
    int n = fscanf(f, "%4095s %ld %ld", log, k, live);
    fclose(f);
    return n >= 1 ? 0 : -1;
}

int main(int argc, char **argv) {
    long long t0 = now();
    static char log[4096], line[8192];
    long k = 0, live = 0;
    /* a supervisor may pass arguments of its own to a run script: only "crasher"
     * or "sink" as the first one selects the mode and the arguments */
    int named = argc > 1 && (!strcmp(argv[1], "crasher") || !strcmp(argv[1], "sink"));
    int crasher = named ? !strcmp(argv[1], "crasher") : access("crash.conf", R_OK) == 0;
    if (named && argc > 2) {
        snprintf(log, sizeof log, "%s", argv[2]);
        k = argc > 3 ? atol(argv[3]) : 0;
        live = argc > 4 ? atol(argv[4]) : 0;
    } else if (conf(crasher ? "crash.conf" : "sink.conf", log, &k, &live)) {
        fprintf(stderr, "restart: no arguments and no config file\n");
        return 2;
    }
    if (crasher) {
        char counter[4200];
        snprintf(counter, sizeof counter, "%s.crashes", log);
        int fd = open(counter, O_RDONLY);
        long i = 0;
        if (fd >= 0) { ssize_t n; char b[4096]; while ((n = read(fd, b, sizeof b)) > 0) i += n; close(fd); }
        snprintf(line, sizeof line, "start %ld %lld\n", i, t0);
        append(log, line);
        snprintf(line, sizeof line, "hello %ld %lld\n", i, t0);
        if (write(1, line, strlen(line)) < 0) { /* no reader: still counts as started */ }
        if (i >= k) for (;;) pause();
        struct timespec d = { live / 1000, (live % 1000) * 1000000L };
        while (nanosleep(&d, &d) && errno == EINTR) {}
        append(counter, "x");
        snprintf(line, sizeof line, "crash %ld %lld\n", i, now());
        append(log, line);
        _exit(1);
    }
    /* sink: one line at a time, time-stamped when read */
    char buf[4096];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(0, buf + have, sizeof buf - have);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0;
        long long t = now();
        have += (size_t)n;
        char *p = buf, *nl;
        while ((nl = memchr(p, '\n', have - (size_t)(p - buf)))) {
            snprintf(line, sizeof line, "recv %lld %.*s\n", t, (int)(nl - p), p);
            append(log, line);
            p = nl + 1;
        }
        have -= (size_t)(p - buf);
        memmove(buf, p, have);
        if (have == sizeof buf) have = 0;
    }
}
