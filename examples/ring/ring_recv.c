/*
 * ring_recv: an ipc-run ring -> stdout, each record followed by a newline
 * (or framed with -f), until the end of the stream.
 *
 * usage: ring_recv [-f] [-n COUNT] [-t MS] PORT
 *   PORT     a port name (IPC_PORT_<PORT> in the environment), a shm name
 *            (/name), or a whole IPC_PORT_* value (key=value ...)
 *   -f       framed output: u32 little-endian length, then the payload
 *   -n COUNT stop after COUNT records
 *   -t MS    give up when no record comes within MS milliseconds
 * exit: 0 end of stream (or COUNT records), 1 error, 2 usage, 3 timed out
 *
 * build: cc -O2 -std=c11 -Wall -o ring_recv ring_recv.c
 */
#include "ipc_ring.h"

#include <stdio.h>

static int usage(void) {
    fputs("usage: ring_recv [-f] [-n COUNT] [-t MS] PORT\n", stderr);
    return 2;
}

int main(int argc, char **argv) {
    int framed = 0, timeout_ms = -1, opt;
    long long count = -1;
    while ((opt = getopt(argc, argv, "fn:t:")) != -1) {
        switch (opt) {
        case 'f': framed = 1; break;
        case 'n': count = atoll(optarg); break;
        case 't': timeout_ms = atoi(optarg); break;
        default: return usage();
        }
    }
    if (optind + 1 != argc) return usage();
    const char *port = argv[optind];

    ipc_ring ring;
    if (ipc_ring_open_any(&ring, port) != IPC_RING_OK) {
        fprintf(stderr, "ring_recv: %s: %s\n", port, strerror(errno));
        return 1;
    }
    /* Room for the largest record the ring can hold: recv never says too large. */
    size_t cap = (size_t)ring.max_record;
    unsigned char *buf = malloc(cap ? cap : 1);
    if (buf == NULL) {
        perror("ring_recv");
        return 1;
    }
    int status = 0;
    for (long long got = 0; count < 0 || got < count; got++) {
        size_t len;
        /* Output is buffered; flush it before sleeping on an empty ring. */
        int rc = ipc_ring_recv(&ring, buf, cap, &len, 0);
        if (rc == IPC_RING_TIMEOUT && timeout_ms != 0) {
            fflush(stdout);
            rc = ipc_ring_recv(&ring, buf, cap, &len, timeout_ms);
        }
        if (rc == IPC_RING_END) break;
        if (rc != IPC_RING_OK) {
            fprintf(stderr, "ring_recv: %s\n", ipc_ring_strerror(rc));
            status = rc == IPC_RING_TIMEOUT ? 3 : 1;
            break;
        }
        if (framed) {
            unsigned char prefix[4];
            ipc_ring__put32(prefix, (uint32_t)len);
            fwrite(prefix, 1, 4, stdout);
            fwrite(buf, 1, len, stdout);
        } else {
            fwrite(buf, 1, len, stdout);
            putchar('\n');
        }
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        perror("ring_recv: stdout");
        status = 1;
    }
    free(buf);
    ipc_ring_close(&ring);
    return status;
}
