/*
 * Unit tests of ipc_ring.h in one process: the return codes and edge cases
 * the command-line programs do not reach (tests/ring_languages.rs builds
 * and runs this, and drives the programs against each other).
 *
 * build: cc -O2 -std=c11 -Wall -o test_ipc_ring test_ipc_ring.c && ./test_ipc_ring
 */
#include "ipc_ring.h"

#include <stdio.h>

static int failures = 0;

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                            \
        }                                                                          \
    } while (0)

static char name[64];

/* A fresh shm segment formatted as a ring; returns its fd. */
static int make(uint64_t size, uint32_t producers) {
    static int count = 0;
    snprintf(name, sizeof name, "/ipc-ring-ctest.%ld.%d", (long)getpid(), count++);
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd == -1 || ipc_ring_format(fd, size, producers) != IPC_RING_OK) {
        perror(name);
        exit(1);
    }
    return fd;
}

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed * 31u + i * 7u);
}

static void test_sizes_and_wrap(void) {
    int fd = make(4096 + 512, 1);
    ipc_ring r;
    CHECK(ipc_ring_open_fd(&r, fd) == IPC_RING_OK);
    CHECK(r.capacity == 512 && r.max_record == 504 && r.producers == 1);
    static unsigned char out[504], in[504];
    size_t len = 99;
    for (unsigned i = 0; i < 5000; i++) {
        size_t n = i < 6 ? (size_t[]){0, 1, 7, 8, 9, 504}[i] : (i * 37u) % 200u;
        fill(out, n, i);
        CHECK(ipc_ring_send(&r, out, n, 0) == IPC_RING_OK);
        CHECK(ipc_ring_recv(&r, in, sizeof in, &len, 0) == IPC_RING_OK);
        CHECK(len == n && memcmp(in, out, n) == 0);
    }
    CHECK(ipc_ring_recv(&r, in, sizeof in, &len, 0) == IPC_RING_TIMEOUT);
    ipc_ring_close(&r);
    close(fd);
    shm_unlink(name);
}

static void test_limits_and_timeouts(void) {
    int fd = make(4096 + 64, 1);
    ipc_ring r;
    CHECK(ipc_ring_open_fd(&r, fd) == IPC_RING_OK);
    unsigned char buf[64] = {0};
    size_t len = 0;
    CHECK(ipc_ring_send(&r, buf, 57, 0) == IPC_RING_TOO_LARGE);
    CHECK(ipc_ring_send(&r, buf, 56, 0) == IPC_RING_OK);
    CHECK(ipc_ring_send(&r, buf, 0, 50) == IPC_RING_TIMEOUT); /* full */
    /* A buffer too small: the record stays, len says its size. */
    CHECK(ipc_ring_recv(&r, buf, 10, &len, 0) == IPC_RING_TOO_LARGE && len == 56);
    CHECK(ipc_ring_recv(&r, buf, sizeof buf, &len, 0) == IPC_RING_OK && len == 56);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    CHECK(ipc_ring_recv(&r, buf, sizeof buf, &len, 120) == IPC_RING_TIMEOUT);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    CHECK(ms >= 119 && ms < 2000);
    CHECK(ipc_ring_close_producer(&r) == IPC_RING_OK);
    CHECK(ipc_ring_close_producer(&r) == IPC_RING_OK); /* counts once */
    CHECK(ipc_ring_recv(&r, buf, sizeof buf, &len, -1) == IPC_RING_END);
    ipc_ring_close(&r);
    close(fd);
    shm_unlink(name);
}

static void test_end_waits_for_every_producer(void) {
    int fd = make(8192, 2);
    ipc_ring reader, one, two;
    CHECK(ipc_ring_open_fd(&reader, fd) == IPC_RING_OK);
    CHECK(ipc_ring_open(&one, name) == IPC_RING_OK);
    CHECK(ipc_ring_open(&two, name) == IPC_RING_OK);
    char buf[16];
    size_t len;
    CHECK(ipc_ring_send(&one, "a", 1, 0) == IPC_RING_OK);
    ipc_ring_close_producer(&one);
    CHECK(ipc_ring_recv(&reader, buf, sizeof buf, &len, 0) == IPC_RING_OK && len == 1);
    CHECK(ipc_ring_recv(&reader, buf, sizeof buf, &len, 0) == IPC_RING_TIMEOUT);
    CHECK(ipc_ring_send(&two, "bc", 2, 0) == IPC_RING_OK);
    ipc_ring_close_producer(&two);
    CHECK(ipc_ring_recv(&reader, buf, sizeof buf, &len, 0) == IPC_RING_OK && len == 2);
    CHECK(ipc_ring_recv(&reader, buf, sizeof buf, &len, 0) == IPC_RING_END);
    /* The header counts both: */
    CHECK(atomic_load(ipc_ring__u32(&reader, IPC_RING_OFF_PRODUCERS_DONE)) == 2);
    ipc_ring_close(&one);
    ipc_ring_close(&two);
    ipc_ring_close(&reader);
    close(fd);
    shm_unlink(name);
}

static void test_refusals(void) {
    int fd = make(8192, 1);
    ipc_ring r;
    CHECK(pwrite(fd, "ipc-rinG", 8, 0) == 8);
    CHECK(ipc_ring_open_fd(&r, fd) == IPC_RING_ERROR && errno == EPROTO);
    CHECK(ipc_ring_format(fd, 8192, 1) == IPC_RING_OK);
    uint32_t two = 2;
    CHECK(pwrite(fd, &two, 4, 8) == 4);
    CHECK(ipc_ring_open_fd(&r, fd) == IPC_RING_ERROR && errno == EPROTO);
    CHECK(ipc_ring_format(fd, 4096 + 63, 1) == IPC_RING_ERROR && errno == EINVAL);
    CHECK(ipc_ring_format(fd, 8192, 0) == IPC_RING_ERROR && errno == EINVAL);
    close(fd);
    shm_unlink(name);
}

static void test_ports(void) {
    int fd = make(8192, 1);
    char spec[512], value[64];
    snprintf(spec, sizeof spec,
             "kind=posix-shm channel=c end=read name=%s size=8192 layout=ring capacity=4096 "
             "producers=1 fd=%d",
             name, fd);
    CHECK(ipc_ring_port_value(spec, "capacity", value, sizeof value) && strcmp(value, "4096") == 0);
    CHECK(ipc_ring_port_value(spec, "end", value, sizeof value) && strcmp(value, "read") == 0);
    CHECK(!ipc_ring_port_value(spec, "missing", value, sizeof value));
    CHECK(!ipc_ring_port_value(spec, "cap", value, sizeof value)); /* whole keys only */
    CHECK(!ipc_ring_port_value(spec, "name", value, 4));           /* does not fit */
    setenv("IPC_PORT_MY_IN", spec, 1);
    ipc_ring r;
    CHECK(ipc_ring_open_port(&r, "my-in") == IPC_RING_OK && r.fd == fd && !r.owns_fd);
    ipc_ring_close(&r);
    CHECK(fcntl(fd, F_GETFD) != -1); /* still open: the port's fd stays the caller's */
    char *fd_key = strstr(spec, " fd=");
    *fd_key = '\0';
    CHECK(ipc_ring_open_spec(&r, spec) == IPC_RING_OK && r.owns_fd);
    ipc_ring_close(&r);
    char *layout = strstr(spec, "layout=ring");
    memcpy(layout, "layout=bare", 11);
    CHECK(ipc_ring_open_spec(&r, spec) == IPC_RING_ERROR && errno == EPROTO);
    CHECK(ipc_ring_open_port(&r, "no-such-port") == IPC_RING_ERROR && errno == ENOENT);
    close(fd);
    shm_unlink(name);
}

int main(void) {
    test_sizes_and_wrap();
    test_limits_and_timeouts();
    test_end_waits_for_every_producer();
    test_refusals();
    test_ports();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    puts("ipc_ring.h: all checks passed");
    return 0;
}
