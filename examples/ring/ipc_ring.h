/*
 * ipc_ring.h: the shared-memory ring of ipc-run (layout version 1) in C.
 *
 * One header, C11 and libc only, Linux only. The contract is
 * docs/shm-ring.md; this file follows it step by step. Every function is
 * `static inline`, so include it in as many translation units as you like.
 *
 * Include it before any other header (it needs _DEFAULT_SOURCE for
 * syscall(2), ftruncate(2) and shm_open(3)), or build with -D_GNU_SOURCE.
 * On glibc older than 2.17, link with -lrt for shm_open.
 *
 *     ipc_ring ring;
 *     if (ipc_ring_open_port(&ring, "OUT") != IPC_RING_OK) { perror("OUT"); ... }
 *     ipc_ring_send(&ring, "hello", 5, -1);
 *     ipc_ring_close_producer(&ring);
 *     ipc_ring_close(&ring);
 *
 * Return codes: IPC_RING_OK (0), IPC_RING_END (end of stream),
 * IPC_RING_TIMEOUT, IPC_RING_TOO_LARGE, and IPC_RING_ERROR (-1) with errno
 * set. Timeouts are in milliseconds: negative waits for ever, 0 only tries.
 *
 * Threads: ipc_ring_send may be called from several threads of one process
 * (a lock among them backs the inter-process record lock, which belongs to
 * the whole process); ipc_ring_recv from one thread at a time.
 */
#ifndef IPC_RING_H
#define IPC_RING_H

#if !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE)
#if defined(__GLIBC__)
/* A libc header came first, in strict ISO mode: too late to ask for more. */
#error "ipc_ring.h: include it before any other header, or build with -D_GNU_SOURCE"
#endif
#define _DEFAULT_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if !defined(__linux__)
#error "ipc_ring.h: the ring waits with futex(2), which is Linux only"
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ipc_ring.h: the ring layout is little-endian; this target is not"
#endif

/* ---- the layout (docs/shm-ring.md, "Segment") ---- */

#define IPC_RING_MAGIC "ipc-ring"
#define IPC_RING_VERSION 1u
#define IPC_RING_HEADER_SIZE 4096u
#define IPC_RING_OFF_MAGIC 0
#define IPC_RING_OFF_VERSION 8
#define IPC_RING_OFF_DATA 12
#define IPC_RING_OFF_CAPACITY 16
#define IPC_RING_OFF_MAX_RECORD 24
#define IPC_RING_OFF_PRODUCERS 32
#define IPC_RING_OFF_FLAGS 36
#define IPC_RING_OFF_HEAD 64
#define IPC_RING_OFF_READERS_WAITING 72
#define IPC_RING_OFF_DATA_SEQ 76
#define IPC_RING_OFF_TAIL 128
#define IPC_RING_OFF_WRITERS_WAITING 136
#define IPC_RING_OFF_PRODUCERS_DONE 192

/* ---- return codes ---- */

#define IPC_RING_OK 0
#define IPC_RING_END 1
#define IPC_RING_TIMEOUT 2
#define IPC_RING_TOO_LARGE 3
#define IPC_RING_ERROR (-1)

/** An open ring: a mapping of the whole segment and the fd behind it. */
typedef struct ipc_ring {
    unsigned char *base;   /* the mapping: header page, then data */
    size_t map_size;       /* bytes mapped (the segment's size) */
    int fd;                /* the segment's fd: mapping source, record lock */
    int owns_fd;           /* close fd in ipc_ring_close */
    uint64_t capacity;     /* bytes in the data area */
    uint64_t max_record;   /* largest payload: capacity - 8 */
    uint32_t producers;    /* declared writer processes */
    int closed_producer;   /* ipc_ring_close_producer already counted us */
    atomic_uint send_lock; /* among this process's sending threads: 0 free, 1 held, 2 contended */
} ipc_ring;

/* ---- small helpers (names with a double underscore are internal) ---- */

static inline _Atomic uint64_t *ipc_ring__u64(const ipc_ring *r, size_t off) {
    return (_Atomic uint64_t *)(void *)(r->base + off);
}

static inline _Atomic uint32_t *ipc_ring__u32(const ipc_ring *r, size_t off) {
    return (_Atomic uint32_t *)(void *)(r->base + off);
}

/* A futex word: a u32 field, or the low 32 bits of a u64 counter (little-endian). */
static inline uint32_t *ipc_ring__word(const ipc_ring *r, size_t off) {
    return (uint32_t *)(void *)(r->base + off);
}

static inline uint64_t ipc_ring__round8(uint64_t n) { return (n + 7u) & ~(uint64_t)7u; }

static inline void ipc_ring__put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void ipc_ring__put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint32_t ipc_ring__get32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t ipc_ring__get64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* ---- time: a deadline on CLOCK_MONOTONIC, or none ---- */

typedef struct ipc_ring__deadline {
    int forever;
    struct timespec at;
} ipc_ring__deadline;

static inline ipc_ring__deadline ipc_ring__deadline_in(int timeout_ms) {
    ipc_ring__deadline d;
    memset(&d, 0, sizeof d);
    if (timeout_ms < 0) {
        d.forever = 1;
        return d;
    }
    clock_gettime(CLOCK_MONOTONIC, &d.at);
    d.at.tv_sec += timeout_ms / 1000;
    d.at.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (d.at.tv_nsec >= 1000000000L) {
        d.at.tv_sec += 1;
        d.at.tv_nsec -= 1000000000L;
    }
    return d;
}

/* Time left until the deadline; 0 when it has passed. */
static inline int ipc_ring__remaining(const ipc_ring__deadline *d, struct timespec *left) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    left->tv_sec = d->at.tv_sec - now.tv_sec;
    left->tv_nsec = d->at.tv_nsec - now.tv_nsec;
    if (left->tv_nsec < 0) {
        left->tv_sec -= 1;
        left->tv_nsec += 1000000000L;
    }
    if (left->tv_sec < 0 || (left->tv_sec == 0 && left->tv_nsec == 0)) {
        left->tv_sec = 0;
        left->tv_nsec = 0;
        return 0;
    }
    return 1;
}

/* ---- futex ---- */

#define IPC_RING__FUTEX_WAIT 0
#define IPC_RING__FUTEX_WAKE 1
#define IPC_RING__FUTEX_PRIVATE 128

/*
 * Sleep while the shared word at `word` still holds `expected`, until woken
 * or the deadline. Returns 0 (woken, or the word had changed: look again),
 * or IPC_RING_TIMEOUT; EINTR counts as "look again".
 */
static inline int ipc_ring__futex_wait(uint32_t *word, uint32_t expected,
                                       const ipc_ring__deadline *d, int private_futex) {
    struct timespec left, *timeout = NULL;
    if (!d->forever) {
        if (!ipc_ring__remaining(d, &left)) return IPC_RING_TIMEOUT;
        timeout = &left;
    }
    int op = IPC_RING__FUTEX_WAIT | (private_futex ? IPC_RING__FUTEX_PRIVATE : 0);
    if (syscall(SYS_futex, word, op, expected, timeout, NULL, 0) == -1 && errno == ETIMEDOUT)
        return IPC_RING_TIMEOUT;
    return 0;
}

static inline void ipc_ring__futex_wake(uint32_t *word, int private_futex) {
    int op = IPC_RING__FUTEX_WAKE | (private_futex ? IPC_RING__FUTEX_PRIVATE : 0);
    syscall(SYS_futex, word, op, INT_MAX, NULL, NULL, 0);
}

/* Bump the reader's wake sequence and wake it, after a change it must see. */
static inline void ipc_ring__wake_reader(ipc_ring *r) {
    atomic_fetch_add(ipc_ring__u32(r, IPC_RING_OFF_DATA_SEQ), 1u);
    ipc_ring__futex_wake(ipc_ring__word(r, IPC_RING_OFF_DATA_SEQ), 0);
}

/* ---- opening ---- */

/* Map the segment behind fd and check its header. Does not take fd. */
static inline int ipc_ring_open_fd(ipc_ring *r, int fd) {
    memset(r, 0, sizeof *r);
    r->fd = -1;
    struct stat st;
    if (fstat(fd, &st) == -1) return IPC_RING_ERROR;
    if (st.st_size < (off_t)(IPC_RING_HEADER_SIZE + 64)) {
        errno = EINVAL; /* too small to be a ring */
        return IPC_RING_ERROR;
    }
    size_t size = (size_t)st.st_size;
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) return IPC_RING_ERROR;
    unsigned char *h = (unsigned char *)base;
    uint64_t capacity = ipc_ring__get64(h + IPC_RING_OFF_CAPACITY);
    if (memcmp(h + IPC_RING_OFF_MAGIC, IPC_RING_MAGIC, 8) != 0 ||
        ipc_ring__get32(h + IPC_RING_OFF_VERSION) != IPC_RING_VERSION ||
        ipc_ring__get32(h + IPC_RING_OFF_DATA) != IPC_RING_HEADER_SIZE || capacity < 64 ||
        capacity % 64 != 0 || capacity > (uint64_t)size - IPC_RING_HEADER_SIZE ||
        ipc_ring__get64(h + IPC_RING_OFF_MAX_RECORD) != capacity - 8) {
        munmap(base, size);
        errno = EPROTO; /* not a ring of layout version 1 */
        return IPC_RING_ERROR;
    }
    r->base = h;
    r->map_size = size;
    r->fd = fd;
    r->capacity = capacity;
    r->max_record = capacity - 8;
    r->producers = ipc_ring__get32(h + IPC_RING_OFF_PRODUCERS);
    atomic_init(&r->send_lock, 0u);
    return IPC_RING_OK;
}

/* Open a segment by its shm name ("/ipc-run.<id>.<edge>"). */
static inline int ipc_ring_open(ipc_ring *r, const char *shm_name) {
    int fd = shm_open(shm_name, O_RDWR | O_CLOEXEC, 0);
    if (fd == -1) return IPC_RING_ERROR;
    if (ipc_ring_open_fd(r, fd) != IPC_RING_OK) {
        int e = errno;
        close(fd);
        errno = e;
        return IPC_RING_ERROR;
    }
    r->owns_fd = 1;
    return IPC_RING_OK;
}

/*
 * Copy the value of key `key` out of an IPC_PORT_* value (space-separated
 * key=value pairs) into out[cap]. Returns 1 if found and it fits, else 0.
 */
static inline int ipc_ring_port_value(const char *spec, const char *key, char *out, size_t cap) {
    size_t klen = strlen(key);
    const char *p = spec;
    while (*p) {
        while (*p == ' ') p++;
        const char *end = p;
        while (*end && *end != ' ') end++;
        if ((size_t)(end - p) > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            size_t n = (size_t)(end - p) - klen - 1;
            if (n + 1 > cap) return 0;
            memcpy(out, p + klen + 1, n);
            out[n] = '\0';
            return 1;
        }
        p = end;
    }
    return 0;
}

/*
 * Open the ring an IPC_PORT_* value describes: through its fd= when there is
 * one, else by its name=. Refuses a port whose layout= is present and not
 * "ring".
 */
static inline int ipc_ring_open_spec(ipc_ring *r, const char *spec) {
    char value[256];
    if (ipc_ring_port_value(spec, "layout", value, sizeof value) && strcmp(value, "ring") != 0) {
        errno = EPROTO;
        return IPC_RING_ERROR;
    }
    if (ipc_ring_port_value(spec, "fd", value, sizeof value)) {
        char *end;
        errno = 0;
        long fd = strtol(value, &end, 10);
        if (errno != 0 || *end != '\0' || end == value || fd < 0 || fd > INT_MAX) {
            errno = EINVAL;
            return IPC_RING_ERROR;
        }
        return ipc_ring_open_fd(r, (int)fd);
    }
    if (ipc_ring_port_value(spec, "name", value, sizeof value)) return ipc_ring_open(r, value);
    errno = EINVAL; /* neither fd= nor name= */
    return IPC_RING_ERROR;
}

/*
 * Open the port named `port` from the environment: IPC_PORT_<PORT>, the name
 * upper-cased with '-' as '_'.
 */
static inline int ipc_ring_open_port(ipc_ring *r, const char *port) {
    char var[256] = "IPC_PORT_";
    size_t n = strlen(var);
    for (const char *p = port; *p; p++) {
        if (n + 1 >= sizeof var) {
            errno = ENAMETOOLONG;
            return IPC_RING_ERROR;
        }
        char c = *p;
        if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
        if (c == '-') c = '_';
        var[n++] = c;
    }
    var[n] = '\0';
    const char *spec = getenv(var);
    if (spec == NULL) {
        errno = ENOENT;
        return IPC_RING_ERROR;
    }
    return ipc_ring_open_spec(r, spec);
}

/*
 * Open a ring named any of three ways, as the demo programs take it: a full
 * IPC_PORT_* value (it contains '='), a shm name (it starts with '/'), or a
 * port name looked up in the environment.
 */
static inline int ipc_ring_open_any(ipc_ring *r, const char *what) {
    if (strchr(what, '=') != NULL) return ipc_ring_open_spec(r, what);
    if (what[0] == '/') return ipc_ring_open(r, what);
    return ipc_ring_open_port(r, what);
}

/* Unmap; close the fd when ipc_ring_open opened it. Does not close the producer. */
static inline void ipc_ring_close(ipc_ring *r) {
    if (r->base != NULL) munmap(r->base, r->map_size);
    if (r->owns_fd && r->fd >= 0) close(r->fd);
    r->base = NULL;
    r->fd = -1;
    r->owns_fd = 0;
}

/*
 * Make fd a fresh ring of `size` bytes for `producers` writers: size it,
 * zero the header page and write the fixed fields. For tests and programs
 * that make their own segment; nobody may use it while this runs.
 */
static inline int ipc_ring_format(int fd, uint64_t size, uint32_t producers) {
    if (size < IPC_RING_HEADER_SIZE + 64 || producers == 0 || size > (uint64_t)INT64_MAX) {
        errno = EINVAL;
        return IPC_RING_ERROR;
    }
    if (ftruncate(fd, (off_t)size) == -1) return IPC_RING_ERROR;
    unsigned char page[IPC_RING_HEADER_SIZE];
    memset(page, 0, sizeof page);
    uint64_t capacity = (size - IPC_RING_HEADER_SIZE) / 64 * 64;
    memcpy(page + IPC_RING_OFF_MAGIC, IPC_RING_MAGIC, 8);
    ipc_ring__put32(page + IPC_RING_OFF_VERSION, IPC_RING_VERSION);
    ipc_ring__put32(page + IPC_RING_OFF_DATA, IPC_RING_HEADER_SIZE);
    ipc_ring__put64(page + IPC_RING_OFF_CAPACITY, capacity);
    ipc_ring__put64(page + IPC_RING_OFF_MAX_RECORD, capacity - 8);
    ipc_ring__put32(page + IPC_RING_OFF_PRODUCERS, producers);
    size_t done = 0;
    while (done < sizeof page) {
        ssize_t n = pwrite(fd, page + done, sizeof page - done, (off_t)done);
        if (n == -1 && errno == EINTR) continue;
        if (n <= 0) return IPC_RING_ERROR;
        done += (size_t)n;
    }
    return IPC_RING_OK;
}

/* ---- the writer lock: among this process's threads, then among processes ---- */

static inline int ipc_ring__lock_threads(ipc_ring *r, const ipc_ring__deadline *d) {
    unsigned expected = 0;
    if (atomic_compare_exchange_strong(&r->send_lock, &expected, 1u)) return IPC_RING_OK;
    /* Contended: mark it 2 so the holder wakes us, and sleep until free. */
    while (atomic_exchange(&r->send_lock, 2u) != 0) {
        if (ipc_ring__futex_wait((uint32_t *)(void *)&r->send_lock, 2u, d, 1) == IPC_RING_TIMEOUT)
            return IPC_RING_TIMEOUT;
    }
    return IPC_RING_OK;
}

static inline void ipc_ring__unlock_threads(ipc_ring *r) {
    if (atomic_exchange(&r->send_lock, 0u) == 2u)
        ipc_ring__futex_wake((uint32_t *)(void *)&r->send_lock, 1);
}

/*
 * The record lock on byte 0 of the segment. F_SETLKW cannot time out, so a
 * bounded wait polls F_SETLK with a growing pause (20 us to 2 ms).
 */
static inline int ipc_ring__lock_processes(ipc_ring *r, const ipc_ring__deadline *d) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    if (d->forever) {
        while (fcntl(r->fd, F_SETLKW, &fl) == -1) {
            if (errno != EINTR) return IPC_RING_ERROR;
        }
        return IPC_RING_OK;
    }
    long pause_ns = 20000;
    for (;;) {
        if (fcntl(r->fd, F_SETLK, &fl) == 0) return IPC_RING_OK;
        if (errno != EAGAIN && errno != EACCES && errno != EINTR) return IPC_RING_ERROR;
        struct timespec left;
        if (!ipc_ring__remaining(d, &left)) return IPC_RING_TIMEOUT;
        struct timespec nap = {0, pause_ns};
        if (left.tv_sec == 0 && left.tv_nsec < nap.tv_nsec) nap = left;
        nanosleep(&nap, NULL);
        if (pause_ns < 2000000) pause_ns *= 2;
    }
}

static inline void ipc_ring__unlock_processes(ipc_ring *r) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_UNLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    fcntl(r->fd, F_SETLK, &fl);
}

/* ---- writing ---- */

/*
 * Append one record of len bytes. IPC_RING_TOO_LARGE when len exceeds the
 * largest record (capacity - 8), IPC_RING_TIMEOUT when no space came in time.
 */
static inline int ipc_ring_send(ipc_ring *r, const void *data, size_t len, int timeout_ms) {
    if ((uint64_t)len > r->max_record) return IPC_RING_TOO_LARGE;
    uint64_t size = 8 + ipc_ring__round8((uint64_t)len);
    ipc_ring__deadline d = ipc_ring__deadline_in(timeout_ms);
    int rc = ipc_ring__lock_threads(r, &d);
    if (rc != IPC_RING_OK) return rc;
    if (r->producers > 1) {
        rc = ipc_ring__lock_processes(r, &d);
        if (rc != IPC_RING_OK) {
            int e = errno;
            ipc_ring__unlock_threads(r);
            errno = e;
            return rc;
        }
    }
    _Atomic uint64_t *head = ipc_ring__u64(r, IPC_RING_OFF_HEAD);
    _Atomic uint64_t *tail = ipc_ring__u64(r, IPC_RING_OFF_TAIL);
    _Atomic uint32_t *writers_waiting = ipc_ring__u32(r, IPC_RING_OFF_WRITERS_WAITING);
    uint64_t h = atomic_load_explicit(head, memory_order_acquire);
    for (;;) {
        uint64_t t = atomic_load_explicit(tail, memory_order_acquire);
        if (r->capacity - (h - t) >= size) break;
        /* Wait for space: raise the flag, look again, sleep on tail's low word. */
        rc = IPC_RING_OK;
        atomic_fetch_add(writers_waiting, 1u);
        t = atomic_load(tail);
        if (r->capacity - (h - t) < size)
            rc = ipc_ring__futex_wait(ipc_ring__word(r, IPC_RING_OFF_TAIL), (uint32_t)t, &d, 0);
        atomic_fetch_sub(writers_waiting, 1u);
        if (rc == IPC_RING_TIMEOUT) {
            t = atomic_load_explicit(tail, memory_order_acquire);
            if (r->capacity - (h - t) >= size) {
                rc = IPC_RING_OK;
                break;
            }
            if (r->producers > 1) ipc_ring__unlock_processes(r);
            ipc_ring__unlock_threads(r);
            return IPC_RING_TIMEOUT;
        }
    }
    /* The record header never straddles the end; the payload may wrap. */
    unsigned char *data_area = r->base + IPC_RING_HEADER_SIZE;
    uint64_t at = h % r->capacity;
    ipc_ring__put32(data_area + at, (uint32_t)len);
    ipc_ring__put32(data_area + at + 4, 0);
    at = (at + 8) % r->capacity;
    size_t first = (size_t)(r->capacity - at) < len ? (size_t)(r->capacity - at) : len;
    if (len > 0) {
        memcpy(data_area + at, data, first);
        memcpy(data_area, (const unsigned char *)data + first, len - first);
    }
    /* Publish, then wake the reader if it sleeps. */
    atomic_store_explicit(head, h + size, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(ipc_ring__u32(r, IPC_RING_OFF_READERS_WAITING), memory_order_relaxed) != 0)
        ipc_ring__wake_reader(r);
    if (r->producers > 1) ipc_ring__unlock_processes(r);
    ipc_ring__unlock_threads(r);
    return IPC_RING_OK;
}

/*
 * This producer will write nothing more: add 1 to "producers done" and wake
 * the reader. Counts once per ipc_ring handle. Not for a producer that exits
 * only to be restarted.
 */
static inline int ipc_ring_close_producer(ipc_ring *r) {
    if (r->closed_producer) return IPC_RING_OK;
    r->closed_producer = 1;
    atomic_fetch_add(ipc_ring__u32(r, IPC_RING_OFF_PRODUCERS_DONE), 1u);
    ipc_ring__wake_reader(r); /* always: the reader may be asleep */
    return IPC_RING_OK;
}

/* ---- reading ---- */

/*
 * Take the next record into buf[cap] and its length into *len. IPC_RING_END
 * once every producer closed and the ring is empty; IPC_RING_TOO_LARGE when
 * the record does not fit in cap (it stays in the ring, *len tells its
 * size); IPC_RING_ERROR with errno EBADMSG on a corrupt record.
 */
static inline int ipc_ring_recv(ipc_ring *r, void *buf, size_t cap, size_t *len, int timeout_ms) {
    _Atomic uint64_t *head = ipc_ring__u64(r, IPC_RING_OFF_HEAD);
    _Atomic uint64_t *tail = ipc_ring__u64(r, IPC_RING_OFF_TAIL);
    _Atomic uint32_t *done = ipc_ring__u32(r, IPC_RING_OFF_PRODUCERS_DONE);
    _Atomic uint32_t *readers_waiting = ipc_ring__u32(r, IPC_RING_OFF_READERS_WAITING);
    ipc_ring__deadline d = ipc_ring__deadline_in(timeout_ms);
    uint64_t t = atomic_load_explicit(tail, memory_order_relaxed);
    uint64_t h;
    for (;;) {
        h = atomic_load_explicit(head, memory_order_acquire);
        if (h != t) break;
        uint32_t n_done = atomic_load_explicit(done, memory_order_acquire);
        if (n_done >= r->producers) {
            h = atomic_load_explicit(head, memory_order_acquire);
            if (h != t) break;
            return IPC_RING_END;
        }
        /*
         * Wait for data: raise the flag, read the wake sequence, look again,
         * sleep on the sequence. A publish or a close after the sequence was
         * read bumps it, so FUTEX_WAIT returns at once; one before shows in
         * head or "producers done".
         */
        atomic_fetch_add(readers_waiting, 1u);
        uint32_t seq = atomic_load(ipc_ring__u32(r, IPC_RING_OFF_DATA_SEQ));
        h = atomic_load(head);
        n_done = atomic_load(done);
        int rc = 0;
        if (h == t && n_done < r->producers)
            rc = ipc_ring__futex_wait(ipc_ring__word(r, IPC_RING_OFF_DATA_SEQ), seq, &d, 0);
        atomic_fetch_sub(readers_waiting, 1u);
        if (rc == IPC_RING_TIMEOUT) {
            h = atomic_load_explicit(head, memory_order_acquire);
            if (h != t) break;
            if (atomic_load_explicit(done, memory_order_acquire) >= r->producers) return IPC_RING_END;
            return IPC_RING_TIMEOUT;
        }
    }
    const unsigned char *data_area = r->base + IPC_RING_HEADER_SIZE;
    uint64_t at = t % r->capacity;
    uint32_t length = ipc_ring__get32(data_area + at);
    uint64_t size = 8 + ipc_ring__round8(length);
    if (length > r->max_record || ipc_ring__get32(data_area + at + 4) != 0 || size > h - t) {
        errno = EBADMSG;
        return IPC_RING_ERROR;
    }
    *len = length;
    if (length > cap) return IPC_RING_TOO_LARGE;
    at = (at + 8) % r->capacity;
    size_t first = (size_t)(r->capacity - at) < length ? (size_t)(r->capacity - at) : length;
    if (length > 0) {
        memcpy(buf, data_area + at, first);
        memcpy((unsigned char *)buf + first, data_area, length - first);
    }
    atomic_store_explicit(tail, t + size, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(ipc_ring__u32(r, IPC_RING_OFF_WRITERS_WAITING), memory_order_relaxed) != 0)
        ipc_ring__futex_wake(ipc_ring__word(r, IPC_RING_OFF_TAIL), 0);
    return IPC_RING_OK;
}

/* A short name for a return code, for messages. */
static inline const char *ipc_ring_strerror(int rc) {
    switch (rc) {
    case IPC_RING_OK: return "ok";
    case IPC_RING_END: return "end of stream";
    case IPC_RING_TIMEOUT: return "timed out";
    case IPC_RING_TOO_LARGE: return "record too large";
    default: return strerror(errno);
    }
}

#endif /* IPC_RING_H */
