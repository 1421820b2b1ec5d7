/* OSU-style collective latency for Open MPI, the reference of bench/coll.
 * For each collective and size: a barrier, warm-up iterations, timed
 * iterations; every rank's mean time per call is reduced with MAX to rank 0,
 * which prints "<collective> bytes=<b> value=<us>". Sizes are per rank (per
 * block for allgather, alltoall, gather and scatter); allreduce and reduce sum
 * doubles. Keep in step with bench/coll/main.go.
 *
 *   mpirun -np 4 bench/bin/osu_coll [-sizes 8,1k,...] [-ops allreduce,bcast,...]
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long parse_size(const char *s) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*end == 'k' || *end == 'K') v <<= 10;
    if (*end == 'm' || *end == 'M') v <<= 20;
    return v;
}

static void iters_for(long size, int *iters, int *warm) {
    long it = (64L << 20) / (size + 1);
    if (it > 1000) it = 1000;
    if (it < 5) it = 5;
    *iters = (int)it;
    *warm = (int)(it / 10 + 1);
}

static int has(const char *list, const char *name) {
    if (!list) return 1;
    const char *p = strstr(list, name);
    size_t n = strlen(name);
    while (p) {
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return 1;
        p = strstr(p + 1, name);
    }
    return 0;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, p;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &p);
    const char *ops = NULL;
    long sizes[32] = {8, 1024, 65536, 1 << 20, 8 << 20};
    int nsizes = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-ops")) ops = argv[i + 1];
        if (!strcmp(argv[i], "-sizes")) {
            nsizes = 0;
            char *s = strdup(argv[i + 1]);
            for (char *t = strtok(s, ","); t && nsizes < 32; t = strtok(NULL, ",")) sizes[nsizes++] = parse_size(t);
        }
    }
    const char *names[] = {"barrier", "bcast", "allreduce", "allgather", "alltoall", "reduce", "scatter", "gather"};
    for (int o = 0; o < 8; o++) {
        if (!has(ops, names[o])) continue;
        for (int si = 0; si < nsizes; si++) {
            long size = sizes[si];
            if (o == 0 && si > 0) break; /* barrier has no size */
            if (o == 0) size = 0;
            long n = size / 8 > 0 ? size / 8 : 1; /* doubles */
            long bytes = (o == 0) ? 0 : size;
            double *a = malloc((size_t)n * 8 * p), *b = malloc((size_t)n * 8 * p);
            memset(a, 1, (size_t)n * 8 * p);
            memset(b, 0, (size_t)n * 8 * p);
            int iters, warm;
            iters_for(bytes, &iters, &warm);
            double t0 = 0;
            for (int it = -warm; it < iters; it++) {
                if (it == 0) {
                    MPI_Barrier(MPI_COMM_WORLD);
                    t0 = MPI_Wtime();
                }
                switch (o) {
                case 0: MPI_Barrier(MPI_COMM_WORLD); break;
                case 1: MPI_Bcast(a, (int)size, MPI_BYTE, 0, MPI_COMM_WORLD); break;
                case 2: MPI_Allreduce(a, b, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD); break;
                case 3: MPI_Allgather(a, (int)size, MPI_BYTE, b, (int)size, MPI_BYTE, MPI_COMM_WORLD); break;
                case 4: MPI_Alltoall(a, (int)size, MPI_BYTE, b, (int)size, MPI_BYTE, MPI_COMM_WORLD); break;
                case 5: MPI_Reduce(a, b, (int)n, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD); break;
                case 6: MPI_Scatter(a, (int)size, MPI_BYTE, b, (int)size, MPI_BYTE, 0, MPI_COMM_WORLD); break;
                case 7: MPI_Gather(a, (int)size, MPI_BYTE, b, (int)size, MPI_BYTE, 0, MPI_COMM_WORLD); break;
                }
            }
            double mine = (MPI_Wtime() - t0) * 1e6 / iters, worst;
            MPI_Reduce(&mine, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
            if (rank == 0) {
                printf("%s bytes=%ld value=%.2f\n", names[o], bytes, worst);
                fflush(stdout);
            }
            free(a);
            free(b);
        }
    }
    MPI_Finalize();
    return 0;
}
