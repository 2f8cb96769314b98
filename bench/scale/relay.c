/* relay.c - the C floor for relaying at scale: one process starts N writers,
 * each with its stdout on a pipe of its own, and relays their output to its
 * stdout as whole lines prefixed "gI | " (I the writer's index), as ipc-run
 * prefixes a child's lines with its instance name. One epoll set registered
 * once, reads of 64 KiB, a partial line kept per pipe until its end arrives,
 * the output gathered in a 64 KiB buffer: no line is lost or broken.
 *
 *   relay N PROGRAM ARG...     (each writer runs PROGRAM ARG..., stderr as ours)
 * The floor of bench/scale/run.sh and bench/peers/relay_window.py.
 * bench/peers/relay.c is another program, the floors of the peer
 * comparisons: a one-stream prefixer, and `-p N`, fork and poll(2), names
 * padded as ipc-run pads them, any line held whole. They share only the
 * output buffer below (flush, put).
 * Build: cc -O2 -o relay relay.c */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define LINE_MAX_KEPT 4096

struct src {
    char prefix[24];
    size_t plen, carry_len;
    char carry[LINE_MAX_KEPT];
};

static char out[1 << 16];
static size_t olen;

static void flush(void) {
    for (char *p = out; olen;) {
        ssize_t k = write(1, p, olen);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) exit(1);
        p += k;
        olen -= (size_t)k;
    }
}

static void put(const char *p, size_t n) {
    while (n) {
        if (olen == sizeof out) flush();
        size_t k = n < sizeof out - olen ? n : sizeof out - olen;
        memcpy(out + olen, p, k);
        olen += k, p += k, n -= k;
    }
}

/* one whole line: prefix, the kept start of it, then the rest */
static void line(struct src *s, const char *p, size_t n) {
    put(s->prefix, s->plen);
    put(s->carry, s->carry_len);
    s->carry_len = 0;
    put(p, n);
}

static void feed(struct src *s, const char *p, size_t n) {
    const char *e = p + n, *nl;
    while ((nl = memchr(p, '\n', (size_t)(e - p)))) {
        line(s, p, (size_t)(nl + 1 - p));
        p = nl + 1;
    }
    size_t rest = (size_t)(e - p);
    if (s->carry_len + rest > sizeof s->carry) { /* an overlong line goes out in pieces */
        line(s, p, rest);
        put("\n", 1);
        return;
    }
    memcpy(s->carry + s->carry_len, p, rest);
    s->carry_len += rest;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: relay N PROGRAM ARG...\n");
        return 2;
    }
    long n = atol(argv[1]);
    struct src *srcs = calloc((size_t)n, sizeof *srcs);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (!srcs || ep < 0) return 1;
    for (long i = 0; i < n; i++) {
        int fds[2];
        posix_spawn_file_actions_t fa;
        pid_t pid;
        if (pipe2(fds, O_CLOEXEC)) { perror("relay: pipe2"); return 1; }
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
        if (posix_spawn(&pid, argv[2], &fa, NULL, argv + 2, environ)) { perror("relay: spawn"); return 1; }
        posix_spawn_file_actions_destroy(&fa);
        close(fds[1]);
        srcs[i].plen = (size_t)snprintf(srcs[i].prefix, sizeof srcs[i].prefix, "g%ld | ", i);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((unsigned long long)i << 32) | (unsigned)fds[0]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[0], &ev)) { perror("relay: epoll_ctl"); return 1; }
    }
    static char in[1 << 16];
    struct epoll_event evs[256];
    for (long open_fds = n; open_fds > 0;) {
        int k = epoll_wait(ep, evs, 256, -1);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return 1;
        for (int j = 0; j < k; j++) {
            int fd = (int)(evs[j].data.u64 & 0xffffffffu);
            struct src *s = &srcs[evs[j].data.u64 >> 32];
            ssize_t r = read(fd, in, sizeof in);
            if (r < 0 && errno == EINTR) continue;
            if (r > 0) { feed(s, in, (size_t)r); continue; }
            if (s->carry_len) line(s, "\n", 1); /* a last line without newline */
            close(fd);
            open_fds--;
        }
        if (olen >= sizeof out / 2) flush();
    }
    flush();
    int bad = 0, st;
    while (wait(&st) > 0) bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    return bad;
}
