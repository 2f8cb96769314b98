/* lines.c: an MPI program whose rank 0 writes lines for a process outside
 * the world, for ipc-run's tests and topologies/mpi-pipe.toml.
 *
 * Usage: lines N [stdin]
 *
 * Rank 0 writes N numbered lines on stdout, `line I of N` (I from 1),
 * then the sum of every rank (MPI_Reduce) as `sum S of SIZE ranks`. With
 * `stdin`, it first copies its own stdin to stdout, each line as
 * `echo: LINE`, until EOF (mpirun forwards its stdin to rank 0). Every
 * other rank writes one line on stdout and one on stderr, `rank R of SIZE
 * says hello` and `rank R of SIZE is on stderr`. Exit status 0.
 *
 * Build: mpicc -O2 -o lines examples/mpi/lines.c
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    int rank = 0, size = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long n = argc > 1 ? atol(argv[1]) : 10;
    int echo = argc > 2 && strcmp(argv[2], "stdin") == 0;

    int sum = 0;
    MPI_Reduce(&rank, &sum, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        if (echo) {
            char line[4096];
            while (fgets(line, sizeof line, stdin) != NULL) {
                printf("echo: %s", line);
            }
        }
        for (long i = 1; i <= n; i++) {
            printf("line %ld of %ld\n", i, n);
        }
        printf("sum %d of %d ranks\n", sum, size);
        fflush(stdout);
    } else {
        printf("rank %d of %d says hello\n", rank, size);
        fflush(stdout);
        fprintf(stderr, "rank %d of %d is on stderr\n", rank, size);
        fflush(stderr);
    }
    MPI_Finalize();
    return 0;
}
