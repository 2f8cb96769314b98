/* ring.c: an MPI program for ipc-run's tests and topologies/mpi.toml.
 *
 * Every rank sends its rank to the next one around a ring (MPI_Send and
 * MPI_Recv) and checks what it got from the previous one; then all ranks
 * add their ranks with MPI_Allreduce and check the sum, n*(n-1)/2. Each
 * rank prints one line per step on stdout, so a test can see every rank's
 * output under its own prefix. Exit status 0 only when both checks hold.
 *
 * Build: mpicc -O2 -o ring examples/mpi/ring.c
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int rank = 0, size = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const char *name = argc > 1 ? argv[1] : "rank";

    int next = (rank + 1) % size;
    int prev = (rank + size - 1) % size;
    int got = -1;
    /* Even ranks send first, odd ranks receive first: no deadlock even
       without buffering, and a world of one sends to itself via Sendrecv. */
    if (size == 1) {
        MPI_Sendrecv(&rank, 1, MPI_INT, next, 0, &got, 1, MPI_INT, prev, 0,
                     MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else if (rank % 2 == 0) {
        MPI_Send(&rank, 1, MPI_INT, next, 0, MPI_COMM_WORLD);
        MPI_Recv(&got, 1, MPI_INT, prev, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
        MPI_Recv(&got, 1, MPI_INT, prev, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(&rank, 1, MPI_INT, next, 0, MPI_COMM_WORLD);
    }
    printf("%s: rank %d of %d received %d from rank %d, pid %d\n", name, rank, size, got, prev,
           (int)getpid());

    int sum = 0;
    MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    int want = size * (size - 1) / 2;
    printf("%s: rank %d allreduce sum %d (want %d)\n", name, rank, sum, want);
    fflush(stdout);

    int ok = got == prev && sum == want;
    if (getenv("RING_HOLD") != NULL) {
        /* Tests that kill the run mid-job hold every rank here. */
        for (;;) {
            MPI_Barrier(MPI_COMM_WORLD);
        }
    }
    MPI_Finalize();
    return ok ? 0 : 1;
}
