#define _GNU_SOURCE
/* spawnbench.c - the C floor for launching: starts N copies of /bin/true, all
 * at once, then waits for all of them (like `cmd & ... wait`).
 * posix_spawn-pipes also gives every child its own stdout and stderr pipe,
 * held open by the launcher until it has read each to EOF, as a manager that
 * relays output must: the floor for launching with output capture.
 * usage: spawnbench posix_spawn|posix_spawn-pipes|fork-exec N
 * Build: cc -O2 -o spawnbench spawnbench.c */
#include <fcntl.h>
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
    int pipes = !strcmp(argv[1], "posix_spawn-pipes");
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    int *outs = calloc((size_t)n * 2, sizeof *outs);
    for (int i = 0; i < n; i++) {
        if (pipes) {
            int o[2], e[2];
            posix_spawn_file_actions_t fa;
            if (pipe2(o, O_CLOEXEC) || pipe2(e, O_CLOEXEC)) { perror("pipe2"); return 1; }
            posix_spawn_file_actions_init(&fa);
            posix_spawn_file_actions_adddup2(&fa, o[1], 1);
            posix_spawn_file_actions_adddup2(&fa, e[1], 2);
            if (posix_spawn(&pids[i], targv[0], &fa, NULL, targv, environ)) pids[i] = -1;
            posix_spawn_file_actions_destroy(&fa);
            close(o[1]); close(e[1]);
            outs[2 * i] = o[0]; outs[2 * i + 1] = e[0];
        } else if (fork_exec) {
            if ((pids[i] = fork()) == 0) { execve(targv[0], targv, environ); _exit(127); }
        } else if (posix_spawn(&pids[i], targv[0], NULL, NULL, targv, environ)) {
            pids[i] = -1;
        }
    }
    for (int i = 0; pipes && i < 2 * n; i++) {
        char buf[4096];
        while (read(outs[i], buf, sizeof buf) > 0) {}
        close(outs[i]);
    }
    for (int i = 0; i < n; i++) {
        int st;
        if (pids[i] < 0 || waitpid(pids[i], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) bad = 1;
    }
    return bad;
}
