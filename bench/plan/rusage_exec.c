/* Runs one command and reports its wall time and peak RSS, measuring the
 * command alone.
 *
 * usage: rusage_exec COMMAND [ARG...]
 * prints "SECONDS MAXRSS_KIB EXIT_STATUS" on stdout; the command's own
 * stdout and stderr go to /dev/null.
 *
 * Why a C program: Linux folds the high-water RSS of the address space a
 * process had before execve into its ru_maxrss. A child started from Python
 * (posix_spawn, vfork or fork alike) starts in, or with a copy of, the
 * interpreter's address space, so Python's RSS was counted as the command's.
 * This launcher is small: the fork it execs from has ~1 MiB resident, so
 * `rusage_exec /bin/true` reports 1-2 MiB.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: rusage_exec COMMAND [ARG...]\n");
        return 2;
    }
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull < 0) {
        perror("open /dev/null");
        return 2;
    }
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 2;
    }
    if (pid == 0) {
        dup2(devnull, 1);
        dup2(devnull, 2);
        execvp(argv[1], argv + 1);
        _exit(127);
    }
    int status;
    struct rusage usage;
    if (wait4(pid, &status, 0, &usage) < 0) {
        perror("wait4");
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    double seconds = (double)(end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    printf("%.6f %ld %d\n", seconds, usage.ru_maxrss, code);
    return 0;
}
