/*
 * ring_format: make a shared-memory segment and format it as an ipc-run
 * ring, for programs that run without ipc-run (ipc-run formats its own).
 *
 * usage: ring_format NAME SIZE PRODUCERS
 *   NAME       the shm name, /something (created with O_EXCL, mode 0600)
 *   SIZE       the segment's size in bytes: 4096 header + the data area
 *   PRODUCERS  how many writer processes will close before the end of stream
 * exit: 0 made, 1 error, 2 usage
 *
 * build: cc -O2 -std=c11 -Wall -o ring_format ring_format.c
 */
#include "ipc_ring.h"

#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 4 || argv[1][0] != '/') {
        fputs("usage: ring_format /NAME SIZE PRODUCERS\n", stderr);
        return 2;
    }
    char *end;
    unsigned long long size = strtoull(argv[2], &end, 10);
    if (*end != '\0' || end == argv[2]) {
        fprintf(stderr, "ring_format: size %s is not a number\n", argv[2]);
        return 2;
    }
    unsigned long producers = strtoul(argv[3], &end, 10);
    if (*end != '\0' || end == argv[3] || producers == 0 || producers > UINT32_MAX) {
        fprintf(stderr, "ring_format: producers %s is not a positive number\n", argv[3]);
        return 2;
    }
    int fd = shm_open(argv[1], O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd == -1) {
        fprintf(stderr, "ring_format: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    if (ipc_ring_format(fd, size, (uint32_t)producers) != IPC_RING_OK) {
        fprintf(stderr, "ring_format: %s: %s\n", argv[1], strerror(errno));
        shm_unlink(argv[1]);
        return 1;
    }
    close(fd);
    return 0;
}
