/* child.c - the children of the scaling benchmark, run alike by ipc-run and
 * by the C floor (floor.c), so both launch, restart and stop the same program.
 *
 *   child idle READY          writes one byte to the FIFO READY, then sleeps
 *                             until a signal ends it (SIGTERM: default action)
 *   child crash READY LOG GO K LIVE_MS
 *                             the restarted one: appends "start I T" to LOG
 *                             (I = its start count, from the size of LOG.n;
 *                             T = CLOCK_MONOTONIC ns at its first instruction);
 *                             on its first start also writes the READY byte.
 *                             Then, while I < K: opens the FIFO GO for reading,
 *                             which blocks until the harness holds it open
 *                             (so no crash happens while the manager is still
 *                             launching), lives LIVE_MS, appends "crash I T"
 *                             and exits 1. Start K stays up like an idle child.
 *   child write READY GO LINES LEN
 *                             a relay's writer: writes the READY byte, waits
 *                             for GO like the crasher, then writes LINES lines
 *                             of LEN bytes ("xx..x\n") to stdout in writes of
 *                             whole lines of about 64 KiB, and exits 0; so the
 *                             relay is timed apart from the launch.
 *   child sink LINES          reads stdin to EOF; once LINES newlines have
 *                             arrived, prints "LINES T\n" (T: CLOCK_MONOTONIC
 *                             ns) to stdout: the end of a relay, taken in C so
 *                             that the reader is never what is measured.
 * Build: cc -O2 -o child child.c */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static long long now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void append(const char *path, const char *s, size_t n) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, s, n) != (ssize_t)n) _exit(2);
    close(fd);
}

static void ready(const char *fifo) {
    /* the harness holds the read end open for the whole run: this never blocks */
    int fd = open(fifo, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "r", 1) != 1) _exit(2);
    close(fd);
}

static void await_go(const char *go) {
    /* blocks until the harness holds GO open for writing */
    int g = open(go, O_RDONLY | O_CLOEXEC);
    if (g < 0) _exit(2);
    close(g);
}

static int lines(unsigned long long n, size_t len) {
    size_t per = 65536 / len ? 65536 / len : 1;
    char *buf = malloc(per * len);
    if (!buf || len == 0) return 2;
    memset(buf, 'x', per * len);
    for (size_t i = 0; i < per; i++) buf[i * len + len - 1] = '\n';
    while (n) {
        size_t k = n < per ? (size_t)n : per, want = k * len, off = 0;
        while (off < want) {
            ssize_t w = write(1, buf + off, want - off);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) return 1;
            off += (size_t)w;
        }
        n -= k;
    }
    return 0;
}

static int sink(unsigned long long want) {
    static char buf[1 << 16];
    unsigned long long seen = 0;
    int told = 0;
    for (;;) {
        ssize_t k = read(0, buf, sizeof buf);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        for (char *p = buf, *e = buf + k; (p = memchr(p, '\n', (size_t)(e - p))); p++) seen++;
        if (!told && seen >= want) {
            printf("%llu %lld\n", seen, now());
            fflush(stdout);
            told = 1;
        }
    }
    if (!told) printf("%llu -1\n", seen);
    return 0;
}

static void idle(void) {
    for (;;) pause();
}

int main(int argc, char **argv) {
    long long t0 = now();
    if (argc == 3 && !strcmp(argv[1], "idle")) {
        ready(argv[2]);
        idle();
    }
    if (argc == 3 && !strcmp(argv[1], "sink")) return sink(strtoull(argv[2], 0, 10));
    if (argc == 6 && !strcmp(argv[1], "write")) {
        ready(argv[2]);
        await_go(argv[3]);
        return lines(strtoull(argv[4], 0, 10), strtoul(argv[5], 0, 10));
    }
    if (argc != 7 || strcmp(argv[1], "crash")) {
        fprintf(stderr, "usage: child idle READY | child crash READY LOG GO K LIVE_MS | "
                        "child write READY GO LINES LEN | child sink LINES\n");
        return 2;
    }
    const char *log = argv[3], *go = argv[4];
    long k = atol(argv[5]), live = atol(argv[6]);
    char counter[4096], line[128];
    snprintf(counter, sizeof counter, "%s.n", log);
    struct stat st;
    long i = stat(counter, &st) == 0 ? (long)st.st_size : 0;
    append(log, line, (size_t)snprintf(line, sizeof line, "start %ld %lld\n", i, t0));
    if (i == 0) ready(argv[2]);
    if (i >= k) idle();
    await_go(go);
    struct timespec d = {live / 1000, (live % 1000) * 1000000L};
    while (nanosleep(&d, &d) && errno == EINTR) {}
    append(counter, "x", 1);
    append(log, line, (size_t)snprintf(line, sizeof line, "crash %ld %lld\n", i, now()));
    _exit(1);
}
