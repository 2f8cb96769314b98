/* linegen.c - write LINES lines of LEN bytes ("xxx...x\n") to stdout, in
 * writes of whole lines of about 64 KiB. The log-relay benchmark's producer.
 * usage: linegen LINES [LEN=100] */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    unsigned long long lines = argc > 1 ? strtoull(argv[1], 0, 10) : 0;
    size_t len = argc > 2 ? strtoul(argv[2], 0, 10) : 100;
    if (len == 0) return 2;
    size_t per = 65536 / len ? 65536 / len : 1;          /* lines per write */
    char *buf = malloc(per * len);
    if (!buf) return 1;
    memset(buf, 'x', per * len);
    for (size_t i = 0; i < per; i++) buf[i * len + len - 1] = '\n';
    while (lines) {
        size_t n = lines < per ? lines : per, want = n * len, off = 0;
        while (off < want) {
            ssize_t k = write(1, buf + off, want - off);
            if (k < 0) { if (errno == EINTR) continue; return 1; }
            off += (size_t)k;
        }
        lines -= n;
    }
    return 0;
}
