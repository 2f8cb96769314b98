/* spawnbench.c - the C floor for launching: starts N copies of /bin/true, all
 * at once, then waits for all of them (like `cmd & ... wait`).
 * usage: spawnbench posix_spawn|fork-exec N        Build: cc -O2 -o spawnbench spawnbench.c */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static char *const targv[] = {"/bin/true", NULL};

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s posix_spawn|fork-exec N\n", argv[0]); return 2; }
    int fork_exec = !strcmp(argv[1], "fork-exec"), n = atoi(argv[2]), bad = 0;
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    for (int i = 0; i < n; i++) {
        if (fork_exec) {
            if ((pids[i] = fork()) == 0) { execve(targv[0], targv, environ); _exit(127); }
        } else if (posix_spawn(&pids[i], targv[0], NULL, NULL, targv, environ)) {
            pids[i] = -1;
        }
    }
    for (int i = 0; i < n; i++) {
        int st;
        if (pids[i] < 0 || waitpid(pids[i], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) bad = 1;
    }
    return bad;
}
