#define _GNU_SOURCE
/* untilrun.c - time from starting a launcher until N of its children run.
 *
 * Starts CMD, polls its main thread's /proc/PID/task/PID/children every
 * millisecond (the launchers spawn from their main thread; reading a list of
 * thousands costs CPU, so not more often) until it lists N processes, prints the elapsed microseconds, then sends
 * CMD SIGTERM and waits for it. A launcher that spawns one child at a time
 * with vfork semantics (ipc-run, posix_spawn) has exec'd every earlier child
 * when the N-th appears. The same watcher times every launcher.
 *
 * usage: untilrun N CMD [ARGS...]      Build: cc -O2 -o untilrun untilrun.c */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char buf[1 << 20];

static long count_children(pid_t pid) {
    char file[64];
    snprintf(file, sizeof file, "/proc/%d/task/%d/children", pid, pid);
    FILE *f = fopen(file, "r");
    if (!f) return -1;
    long n = 0;
    size_t len;
    while ((len = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < len; i++) n += buf[i] == ' ';  /* "pid pid ... " */
    fclose(f);
    return n;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s N CMD [ARGS...]\n", argv[0]); return 2; }
    long want = atol(argv[1]);
    struct timespec t0, t1, nap = {0, 1000000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid == 0) { execvp(argv[2], argv + 2); _exit(127); }
    long n = 0;
    while ((n = count_children(pid)) >= 0 && n < want) {
        if (waitpid(pid, NULL, WNOHANG) == pid) { fprintf(stderr, "launcher exited early\n"); return 1; }
        nanosleep(&nap, NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    if (n < want) { fprintf(stderr, "launcher gone at %ld children\n", n); return 1; }
    printf("%.0f\n", (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3);
    return 0;
}
