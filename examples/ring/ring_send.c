/*
 * ring_send: stdin -> an ipc-run ring, one record per line (or per framed
 * record with -f). At the end of its input it closes its producer, so the
 * reader sees the end of the stream once every producer did.
 *
 * usage: ring_send [-f] [-k] [-t MS] PORT
 *   PORT  a port name (IPC_PORT_<PORT> in the environment), a shm name
 *         (/name), or a whole IPC_PORT_* value (key=value ...)
 *   -f    framed input: u32 little-endian length, then the payload
 *   -k    keep the producer open at the end (do not count it as done)
 *   -t MS give up when no space comes within MS milliseconds
 * exit: 0 done, 1 error, 2 usage, 3 timed out, 4 record too large
 *
 * build: cc -O2 -std=c11 -Wall -o ring_send ring_send.c
 */
#include "ipc_ring.h"

#include <stdio.h>

static int usage(void) {
    fputs("usage: ring_send [-f] [-k] [-t MS] PORT\n", stderr);
    return 2;
}

/* Read exactly n bytes; 1 on success, 0 on a clean end before any byte, -1 otherwise. */
static int read_exactly(unsigned char *buf, size_t n) {
    size_t got = fread(buf, 1, n, stdin);
    if (got == n) return 1;
    return got == 0 && !ferror(stdin) ? 0 : -1;
}

int main(int argc, char **argv) {
    int framed = 0, keep_open = 0, timeout_ms = -1, opt;
    while ((opt = getopt(argc, argv, "fkt:")) != -1) {
        switch (opt) {
        case 'f': framed = 1; break;
        case 'k': keep_open = 1; break;
        case 't': timeout_ms = atoi(optarg); break;
        default: return usage();
        }
    }
    if (optind + 1 != argc) return usage();
    const char *port = argv[optind];

    ipc_ring ring;
    if (ipc_ring_open_any(&ring, port) != IPC_RING_OK) {
        fprintf(stderr, "ring_send: %s: %s\n", port, strerror(errno));
        return 1;
    }
    char *record = NULL;
    size_t record_cap = 0;
    int status = 0;
    for (;;) {
        size_t len;
        if (framed) {
            unsigned char prefix[4];
            int r = read_exactly(prefix, 4);
            if (r == 0) break;
            if (r < 0) {
                fputs("ring_send: truncated length prefix on stdin\n", stderr);
                status = 1;
                break;
            }
            len = ipc_ring__get32(prefix);
            if (len > record_cap) {
                free(record);
                record_cap = len;
                record = malloc(record_cap ? record_cap : 1);
                if (record == NULL) {
                    perror("ring_send");
                    status = 1;
                    break;
                }
            }
            if (len > 0 && read_exactly((unsigned char *)record, len) != 1) {
                fputs("ring_send: truncated record on stdin\n", stderr);
                status = 1;
                break;
            }
        } else {
            ssize_t n = getline(&record, &record_cap, stdin);
            if (n < 0) break;
            len = (size_t)n;
            if (len > 0 && record[len - 1] == '\n') len--;
        }
        int rc = ipc_ring_send(&ring, record, len, timeout_ms);
        if (rc != IPC_RING_OK) {
            fprintf(stderr, "ring_send: %zu-byte record: %s\n", len, ipc_ring_strerror(rc));
            status = rc == IPC_RING_TIMEOUT ? 3 : rc == IPC_RING_TOO_LARGE ? 4 : 1;
            break;
        }
    }
    free(record);
    if (!keep_open) ipc_ring_close_producer(&ring);
    ipc_ring_close(&ring);
    return status;
}
