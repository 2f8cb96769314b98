#define _GNU_SOURCE
/* tablebench.c - what a spawn costs when the parent's fd table is large.
 *
 * Starts N children (`/bin/sleep 1000`) one after the other, each with its
 * own stdout and stderr pipe whose read ends the parent keeps (2 fds per
 * child, as ipc-run keeps its relay pipes), and prints the time of the spawn
 * loop in microseconds (pipes included; the children are then killed and
 * reaped outside the timing). Modes:
 *   bare         glibc posix_spawn, no pipes: the floor (small table)
 *   posix_spawn  glibc posix_spawn with the pipes dup2'd onto 1 and 2
 *   vfork        clone(CLONE_VM|CLONE_VFORK): what ipc-run does today; the
 *                kernel copies the whole (growing) table at every spawn
 *   files        clone(CLONE_VM|CLONE_VFORK|CLONE_FILES) sharing the table:
 *                the child dup3s its sources onto SLOTS low slots reserved
 *                at start (placeholders on /dev/null), then
 *                close_range(3 + SLOTS, ~0U, CLOSE_RANGE_UNSHARE) copies
 *                only the fds below that; the parent restores its
 *                placeholders once the child has exec'd
 *   helper       a helper forked before any pipe exists receives each
 *                child's fds over a Unix socket (SCM_RIGHTS), spawns with
 *                clone(CLONE_VM|CLONE_VFORK|CLONE_PARENT) from its small
 *                table and replies the pid
 * HOLD=1 keeps the children until SIGTERM (for untilrun.c) instead of
 * killing them at once.
 * CGROUP=/path/to/cgroup (a cgroup v2 directory) makes every child of
 * vfork/files move itself into it (write "0" to cgroup.procs, as ipc-run's
 * children do); with helper, the helper moves itself there once instead.
 *
 * usage: tablebench MODE N      Build: cc -O2 -o tablebench tablebench.c */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif
#define SLOTS 8
#define STACK (64 * 1024)

extern char **environ;
static char *const targv[] = {"/bin/sleep", "1000", NULL};
static char cgroup_procs[4096];
static char *stack_top;
static int base = -1; /* the first reserved slot */

struct child {
    int fds[2];  /* sources for 1 and 2 */
    int files;   /* share the table, then unshare */
};

static void join_cgroup(void) {
    if (!cgroup_procs[0]) return;
    int fd = open(cgroup_procs, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) { if (write(fd, "0", 1) < 0) {} close(fd); }
}

static int child_main(void *arg) {
    struct child *c = arg;
    if (c->files) {
        /* In the shared table: onto the reserved slots 3.., kept CLOEXEC. */
        for (int i = 0; i < 2; i++)
            if (dup3(c->fds[i], base + i, O_CLOEXEC) < 0) _exit(127);
        if (syscall(SYS_close_range, base + SLOTS, ~0U, CLOSE_RANGE_UNSHARE)) _exit(127);
        /* Private table from here (fds below base + SLOTS only). */
        if (dup2(base, 1) < 0 || dup2(base + 1, 2) < 0) _exit(127);
    } else if (dup2(c->fds[0], 1) < 0 || dup2(c->fds[1], 2) < 0) {
        _exit(127);
    }
    syscall(SYS_close_range, 3, ~0U, 0);
    join_cgroup();
    execve(targv[0], targv, environ);
    _exit(127);
}

static pid_t clone_spawn(int out, int err, int extra_flags, int files) {
    struct child c = {{out, err}, files};
    int flags = CLONE_VM | CLONE_VFORK | SIGCHLD | extra_flags | (files ? CLONE_FILES : 0);
    pid_t pid = clone(child_main, stack_top, flags, &c);
    if (files) /* the placeholders back on /dev/null (fd base + SLOTS) */
        for (int i = 0; i < 2; i++) dup3(base + SLOTS, base + i, O_CLOEXEC);
    return pid;
}

/* The helper: receives two fds per request, replies the pid. */
static void helper_loop(int sock) {
    for (;;) {
        char buf[CMSG_SPACE(2 * sizeof(int))], byte;
        struct iovec iov = {&byte, 1};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
                             .msg_control = buf, .msg_controllen = sizeof buf};
        if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) <= 0) _exit(0);
        int fds[2];
        memcpy(fds, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof fds);
        pid_t pid = clone_spawn(fds[0], fds[1], CLONE_PARENT, 0);
        close(fds[0]); close(fds[1]);
        if (write(sock, &pid, sizeof pid) != sizeof pid) _exit(1);
    }
}

static pid_t helper_spawn(int sock, int out, int err) {
    char buf[CMSG_SPACE(2 * sizeof(int))], byte = 0;
    struct iovec iov = {&byte, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = buf, .msg_controllen = sizeof buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET; cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(2 * sizeof(int));
    int fds[2] = {out, err};
    memcpy(CMSG_DATA(cm), fds, sizeof fds);
    pid_t pid = -1;
    if (sendmsg(sock, &msg, 0) != 1 || read(sock, &pid, sizeof pid) != sizeof pid) return -1;
    return pid;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s bare|posix_spawn|vfork|files|helper N\n", argv[0]); return 2; }
    syscall(SYS_close_range, 3, ~0U, 0); /* whatever the shell left open */
    /* With HOLD, SIGTERM waits for sigwait (the children are SIGKILLed). */
    int hold = getenv("HOLD") != NULL;
    sigset_t term;
    sigemptyset(&term); sigaddset(&term, SIGTERM);
    if (hold) sigprocmask(SIG_BLOCK, &term, NULL);
    const char *mode = argv[1];
    int n = atoi(argv[2]);
    const char *cg = getenv("CGROUP");
    if (cg && *cg) snprintf(cgroup_procs, sizeof cgroup_procs, "%s/cgroup.procs", cg);
    char *stack = mmap(NULL, STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    stack_top = stack + STACK;
    int files = !strcmp(mode, "files"), helper = !strcmp(mode, "helper");
    int bare = !strcmp(mode, "bare"), glibc = !strcmp(mode, "posix_spawn");
    if (files) { /* SLOTS consecutive slots and the /dev/null just above */
        base = open("/dev/null", O_RDWR | O_CLOEXEC);
        for (int i = 1; i <= SLOTS; i++)
            if (open("/dev/null", O_RDWR | O_CLOEXEC) != base + i) { fputs("slots not consecutive\n", stderr); return 1; }
    }
    int sock = -1;
    if (helper) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) { perror("socketpair"); return 1; }
        if (fork() == 0) { close(sv[0]); join_cgroup(); cgroup_procs[0] = 0; helper_loop(sv[1]); }
        close(sv[1]);
        sock = sv[0];
    }
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++) {
        if (bare) {
            if (posix_spawn(&pids[i], targv[0], NULL, NULL, targv, environ)) pids[i] = -1;
            continue;
        }
        int o[2], e[2];
        if (pipe2(o, O_CLOEXEC) || pipe2(e, O_CLOEXEC)) { perror("pipe2"); return 1; }
        if (glibc) {
            posix_spawn_file_actions_t fa;
            posix_spawn_file_actions_init(&fa);
            posix_spawn_file_actions_adddup2(&fa, o[1], 1);
            posix_spawn_file_actions_adddup2(&fa, e[1], 2);
            if (posix_spawn(&pids[i], targv[0], &fa, NULL, targv, environ)) pids[i] = -1;
            posix_spawn_file_actions_destroy(&fa);
        } else if (helper) {
            pids[i] = helper_spawn(sock, o[1], e[1]);
        } else {
            pids[i] = clone_spawn(o[1], e[1], 0, files);
        }
        close(o[1]); close(e[1]);  /* the parent keeps both read ends */
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (hold) { /* until untilrun's SIGTERM */
        int sig;
        sigwait(&term, &sig);
    }
    int bad = 0;
    for (int i = 0; i < n; i++) if (pids[i] <= 0 || kill(pids[i], SIGKILL)) bad = 1;
    if (sock >= 0) close(sock);
    while (wait(NULL) > 0 || errno == EINTR) {}
    printf("%.0f\n", (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3);
    return bad;
}
