/* relay.c - the C floor for a log relay: copies stdin to stdout, putting
 * "NAME | " before every line, through a 64 KiB output buffer.
 * usage: relay NAME        Build: cc -O2 -o relay relay.c */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
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

int main(int argc, char **argv) {
    static char in[1 << 16], prefix[80];
    size_t pl = 0;
    for (const char *s = argc > 1 ? argv[1] : "p"; *s && pl < 64; s++) prefix[pl++] = *s;
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
