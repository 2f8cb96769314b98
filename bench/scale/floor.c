/* floor.c - the C floor of the scaling benchmark: the least a supervisor of
 * N children must do, written plainly in C. It starts N children with
 * posix_spawn, restarts the one that exits non-zero at once, and on SIGTERM
 * (or SIGINT) sends SIGTERM to every child, reaps them all and exits 0.
 *
 *   floor N CHILD READY [LOG GO K LIVE_MS]
 *
 * starts N-1 (N without LOG...) copies of `CHILD idle READY` and one of
 * `CHILD crash READY LOG GO K LIVE_MS` (child.c), the same children ipc-run
 * runs in this benchmark. Signals are taken synchronously (sigwaitinfo), and
 * an exit costs one waitpid: nothing here grows with N per event.
 * Build: cc -O2 -o floor floor.c */
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static pid_t spawn(char *const argv[], posix_spawnattr_t *attr) {
    pid_t pid;
    int e = posix_spawn(&pid, argv[0], NULL, attr, argv, environ);
    if (e) {
        fprintf(stderr, "floor: posix_spawn %s: %s\n", argv[0], strerror(e));
        exit(3);
    }
    return pid;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 8) {
        fprintf(stderr, "usage: floor N CHILD READY [LOG GO K LIVE_MS]\n");
        return 2;
    }
    long n = atol(argv[1]);
    char *idle[] = {argv[2], "idle", argv[3], NULL};
    char *crash[] = {argv[2], "crash", argv[3], argc == 8 ? argv[4] : NULL,
                     argc == 8 ? argv[5] : NULL, argc == 8 ? argv[6] : NULL,
                     argc == 8 ? argv[7] : NULL, NULL};
    sigset_t mask, none;
    sigemptyset(&mask);
    sigemptyset(&none);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    /* children start with nothing blocked and default dispositions */
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &mask);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    pid_t *pids = calloc((size_t)n, sizeof *pids);
    if (!pids) return 1;
    long crasher = argc == 8 ? n - 1 : -1;
    for (long i = 0; i < n; i++) pids[i] = spawn(i == crasher ? crash : idle, &attr);
    long live = n;
    int stopping = 0;
    while (live > 0) {
        siginfo_t si;
        int sig = sigwaitinfo(&mask, &si);
        if (sig < 0) continue;
        if (sig != SIGCHLD) {
            if (!stopping)
                for (long i = 0; i < n; i++) kill(pids[i], SIGTERM);
            stopping = 1;
            continue;
        }
        int st;
        pid_t p;
        while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
            int failed = !WIFEXITED(st) || WEXITSTATUS(st) != 0;
            if (!stopping && crasher >= 0 && p == pids[crasher] && failed)
                pids[crasher] = spawn(crash, &attr);
            else
                live--;
        }
    }
    return 0;
}
