/* relay.c - the C floors for a log relay, through a 64 KiB output buffer.
 *
 * usage: relay NAME
 *     copies stdin to stdout, putting "NAME | " before every line.
 * usage: relay -p N PROG [ARG...]
 *     starts N copies of PROG, each writing into a pipe of its own, and
 *     relays all N pipes from one process polling them (what a supervisor's
 *     relay does): every line goes out whole as "gen#I | line", the names
 *     padded to the longest as ipc-run pads them; a line that spans reads is
 *     held for its stream. Exits 1 if a child fails.
 * The floors of the peer comparisons (bench/peers/relay.sh, bench/compare.sh).
 * bench/scale/relay.c is another program, the floor of the scaling suite:
 * posix_spawn and epoll, unpadded `gI` names, long lines split at 4 KiB.
 * They share only the output buffer below (flush, put).
 * Build: cc -O2 -o relay relay.c */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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

static int single(const char *name) {
    static char in[1 << 16], prefix[80];
    size_t pl = 0;
    for (const char *s = name; *s && pl < 64; s++) prefix[pl++] = *s;
    memcpy(prefix + pl, " | ", 3);
    pl += 3;
    int bol = 1;
    for (;;) {
        ssize_t k = read(0, in, sizeof in);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        for (char *p = in, *e = in + k; p < e;) {
            if (bol) put(prefix, pl);
            char *nl = memchr(p, '\n', (size_t)(e - p)), *end = nl ? nl + 1 : e;
            put(p, (size_t)(end - p));
            bol = nl != NULL;
            p = end;
        }
    }
    flush();
    return 0;
}

/* One relayed pipe: its prefix and the start of a line that spans reads. */
struct stream {
    char prefix[32];
    size_t pl;
    char *held;
    size_t hlen, hcap;
};

static void hold(struct stream *s, const char *p, size_t n) {
    if (s->hlen + n > s->hcap) {
        s->hcap = (s->hlen + n) * 2;
        s->held = realloc(s->held, s->hcap);
        if (!s->held) exit(1);
    }
    memcpy(s->held + s->hlen, p, n);
    s->hlen += n;
}

static void relay_chunk(struct stream *s, const char *p, const char *e) {
    if (s->hlen) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        if (!nl) {
            hold(s, p, (size_t)(e - p));
            return;
        }
        put(s->prefix, s->pl);
        put(s->held, s->hlen);
        put(p, (size_t)(nl + 1 - p));
        s->hlen = 0;
        p = nl + 1;
    }
    while (p < e) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        if (!nl) {
            hold(s, p, (size_t)(e - p));
            return;
        }
        put(s->prefix, s->pl);
        put(p, (size_t)(nl + 1 - p));
        p = nl + 1;
    }
}

static int polling(int n, char **argv) {
    static char in[1 << 16];
    struct pollfd *fds = calloc((size_t)n, sizeof *fds);
    struct stream *st = calloc((size_t)n, sizeof *st);
    if (!fds || !st) return 1;
    char last[32];
    int width = snprintf(last, sizeof last, "gen#%d", n - 1);
    for (int i = 0; i < n; i++) {
        int p[2];
        if (pipe(p)) return 1;
        pid_t pid = fork();
        if (pid < 0) return 1;
        if (pid == 0) {
            dup2(p[1], 1);
            close(p[0]);
            close(p[1]);
            execvp(argv[0], argv);
            _exit(127);
        }
        close(p[1]);
        fds[i] = (struct pollfd){.fd = p[0], .events = POLLIN};
        char name[32];
        snprintf(name, sizeof name, "gen#%d", i);
        st[i].pl = (size_t)snprintf(st[i].prefix, sizeof st[i].prefix, "%-*s | ", width, name);
    }
    for (int open = n; open > 0;) {
        if (poll(fds, (nfds_t)n, -1) < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (fds[i].fd < 0 || !fds[i].revents) continue;
            ssize_t k = read(fds[i].fd, in, sizeof in);
            if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (k > 0) {
                relay_chunk(&st[i], in, in + k);
                continue;
            }
            if (st[i].hlen) {
                put(st[i].prefix, st[i].pl);
                put(st[i].held, st[i].hlen);
                put("\n", 1);
            }
            close(fds[i].fd);
            fds[i].fd = -1;
            open--;
        }
    }
    flush();
    int failed = 0, status;
    while (wait(&status) > 0) failed |= !WIFEXITED(status) || WEXITSTATUS(status);
    return failed;
}

int main(int argc, char **argv) {
    if (argc > 3 && !strcmp(argv[1], "-p")) return polling(atoi(argv[2]), argv + 3);
    return single(argc > 1 ? argv[1] : "p");
}
