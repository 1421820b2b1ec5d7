/*
 * osu_p2p: OSU-style point-to-point latency and bandwidth between ranks 0 and 1,
 * the reference half of bench/run.sh. bench/p2p/main.go is the same benchmark
 * written against pmrun's comm package; keep the two in step (iteration counts,
 * tags, synchronisation, output).
 *
 *   mpicc -O2 -o bench/bin/osu_p2p bench/osu/p2p.c
 *   mpirun -np 2 bench/bin/osu_p2p [-test latency|bandwidth|all]
 *                                  [-sizes 8,1024,...] [-iters N] [-warmup N]
 *
 * latency:   ping-pong of one message; prints the one-way time (round trip / 2).
 * bandwidth: rank 0 posts a window of 64 MPI_Isend and waits for all of them;
 *            rank 1 posts 64 MPI_Irecv, waits, and answers with a 4-byte ack.
 *            MB/s = bytes * window * iters / time / 1e6.
 *
 * As in the OSU suite one send buffer and one receive buffer are reused for every
 * message of a window, and the data is not checked; bandwidth_distinct is the
 * same with a buffer of its own for each message of the window (64 distinct
 * buffers on each side, touched before timing), as real programs send.
 *
 * Rank 0 prints one line per size, nothing else on stdout:
 *   latency bytes=<b> value=<us>
 *   bandwidth bytes=<b> value=<MBps>
 *   bandwidth_distinct bytes=<b> value=<MBps>
 * Ranks above 1 take no part.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    TAG_LAT = 1,
    TAG_BW = 2,
    TAG_ACK = 3,
    TAG_SYNC = 4,
    WINDOW = 64,
    ACK_BYTES = 4,
    LARGE = 8192, /* sizes above this use the "large message" iteration counts */
    MAX_SIZES = 64,
};

static const long default_lat[] = {8, 1024, 65536, 1048576};
static const long default_bw[] = {65536, 1048576, 4194304};

static long clamp(long v, long lo, long hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Iteration counts, shared with bench/p2p/main.go. Small messages use OSU's
 * defaults; large ones are scaled by a byte budget so that no size takes much
 * longer than a second on loopback. */
static void lat_iters(long size, long *iters, long *warmup) {
    if (size <= LARGE) {
        *iters = 10000;
        *warmup = 100;
    } else {
        *iters = clamp((1L << 28) / size, 100, 1000);
        *warmup = 10;
    }
}

static void bw_iters(long size, long *iters, long *warmup) {
    if (size <= LARGE) {
        *iters = 100;
        *warmup = 10;
    } else {
        *iters = clamp((1L << 30) / (size * WINDOW), 5, 20);
        *warmup = 2;
    }
}

static void die(const char *msg) {
    fprintf(stderr, "osu_p2p: %s\n", msg);
    MPI_Abort(MPI_COMM_WORLD, 2);
    exit(2);
}

static void usage(void) {
    die("usage: osu_p2p [-test latency|bandwidth|all] [-sizes b1,b2,...] "
        "[-iters N] [-warmup N]");
}

/* parse_sizes reads a comma-separated list of byte counts; k, m suffixes are
 * KiB and MiB. */
static int parse_sizes(const char *s, long *out) {
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0)
            usage();
        if (*end == 'k' || *end == 'K') {
            v <<= 10;
            end++;
        } else if (*end == 'm' || *end == 'M') {
            v <<= 20;
            end++;
        }
        if (n == MAX_SIZES)
            die("too many sizes");
        out[n++] = v;
        if (*end == ',')
            end++;
        else if (*end != '\0')
            usage();
        s = end;
    }
    return n;
}

/* sync_pair lines ranks 0 and 1 up before a timed loop with one empty
 * round trip, the same handshake the Go program uses. */
static void sync_pair(int rank) {
    char b = 0;
    if (rank == 0) {
        MPI_Send(&b, 0, MPI_CHAR, 1, TAG_SYNC, MPI_COMM_WORLD);
        MPI_Recv(&b, 0, MPI_CHAR, 1, TAG_SYNC, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
        MPI_Recv(&b, 0, MPI_CHAR, 0, TAG_SYNC, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(&b, 0, MPI_CHAR, 0, TAG_SYNC, MPI_COMM_WORLD);
    }
}

static void latency(int rank, long size, long iters, long warmup, char *sbuf, char *rbuf) {
    int peer = 1 - rank;
    double start = 0;
    sync_pair(rank);
    for (long i = -warmup; i < iters; i++) {
        if (i == 0)
            start = MPI_Wtime();
        if (rank == 0) {
            MPI_Send(sbuf, (int)size, MPI_CHAR, peer, TAG_LAT, MPI_COMM_WORLD);
            MPI_Recv(rbuf, (int)size, MPI_CHAR, peer, TAG_LAT, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(rbuf, (int)size, MPI_CHAR, peer, TAG_LAT, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(sbuf, (int)size, MPI_CHAR, peer, TAG_LAT, MPI_COMM_WORLD);
        }
    }
    if (rank == 0) {
        double us = (MPI_Wtime() - start) * 1e6 / (2.0 * (double)iters);
        printf("latency bytes=%ld value=%.2f\n", size, us);
        fflush(stdout);
    }
}

/* bandwidth: with win NULL every message of a window goes from (into) sbuf
 * (rbuf), as in the OSU suite; otherwise message w uses win + w*stride, a
 * buffer of its own (bandwidth_distinct). */
static void bandwidth(int rank, long size, long iters, long warmup, char *sbuf, char *rbuf,
                      char *win, long stride) {
    int peer = 1 - rank;
    MPI_Request reqs[WINDOW];
    char ack[ACK_BYTES] = {0};
    double start = 0;
    sync_pair(rank);
    for (long i = -warmup; i < iters; i++) {
        if (i == 0)
            start = MPI_Wtime();
        if (rank == 0) {
            for (int w = 0; w < WINDOW; w++)
                MPI_Isend(win ? win + w * stride : sbuf, (int)size, MPI_CHAR, peer, TAG_BW, MPI_COMM_WORLD,
                          &reqs[w]);
            MPI_Waitall(WINDOW, reqs, MPI_STATUSES_IGNORE);
            MPI_Recv(ack, ACK_BYTES, MPI_CHAR, peer, TAG_ACK, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            for (int w = 0; w < WINDOW; w++)
                MPI_Irecv(win ? win + w * stride : rbuf, (int)size, MPI_CHAR, peer, TAG_BW, MPI_COMM_WORLD,
                          &reqs[w]);
            MPI_Waitall(WINDOW, reqs, MPI_STATUSES_IGNORE);
            MPI_Send(ack, ACK_BYTES, MPI_CHAR, peer, TAG_ACK, MPI_COMM_WORLD);
        }
    }
    if (rank == 0) {
        double secs = MPI_Wtime() - start;
        double mbps = (double)size * WINDOW * (double)iters / secs / 1e6;
        printf("%s bytes=%ld value=%.2f\n", win ? "bandwidth_distinct" : "bandwidth", size, mbps);
        fflush(stdout);
    }
}

int main(int argc, char **argv) {
    int rank, size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

    const char *test = "all";
    long sizes[MAX_SIZES];
    int nsizes = 0; /* 0: each test's defaults */
    long force_iters = 0, force_warmup = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] == '-' && a[1] == '-')
            a++; /* accept --flag as well as -flag */
        if (i + 1 >= argc)
            usage();
        if (strcmp(a, "-test") == 0)
            test = argv[++i];
        else if (strcmp(a, "-sizes") == 0)
            nsizes = parse_sizes(argv[++i], sizes);
        else if (strcmp(a, "-iters") == 0)
            force_iters = atol(argv[++i]);
        else if (strcmp(a, "-warmup") == 0)
            force_warmup = atol(argv[++i]);
        else
            usage();
    }
    int do_lat = strcmp(test, "latency") == 0 || strcmp(test, "all") == 0;
    int do_bw = strcmp(test, "bandwidth") == 0 || strcmp(test, "all") == 0;
    if (!do_lat && !do_bw)
        usage();
    if (size < 2)
        die("needs at least 2 ranks");
    if (rank > 1) {
        MPI_Finalize();
        return 0;
    }

    long max = 0;
    for (int i = 0; i < nsizes; i++)
        max = sizes[i] > max ? sizes[i] : max;
    if (nsizes == 0)
        max = 4194304;
    if (max > 0x7fffffffL)
        die("size too large");
    char *sbuf = malloc((size_t)max + 1), *rbuf = malloc((size_t)max + 1), *win = NULL;
    if (!sbuf || !rbuf)
        die("out of memory");
    memset(sbuf, 'a', (size_t)max + 1); /* touch every page before timing */
    memset(rbuf, 'b', (size_t)max + 1);

    for (int t = 0; t < 2; t++) {
        int is_lat = t == 0;
        if ((is_lat && !do_lat) || (!is_lat && !do_bw))
            continue;
        const long *list = nsizes ? sizes : is_lat ? default_lat : default_bw;
        int n = nsizes ? nsizes
                       : is_lat ? (int)(sizeof default_lat / sizeof *default_lat)
                                : (int)(sizeof default_bw / sizeof *default_bw);
        for (int i = 0; i < n; i++) {
            long iters, warmup;
            if (is_lat)
                lat_iters(list[i], &iters, &warmup);
            else
                bw_iters(list[i], &iters, &warmup);
            if (force_iters > 0)
                iters = force_iters;
            if (force_warmup >= 0)
                warmup = force_warmup;
            if (is_lat)
                latency(rank, list[i], iters, warmup, sbuf, rbuf);
            else
                bandwidth(rank, list[i], iters, warmup, sbuf, rbuf, NULL, 0);
        }
        if (is_lat)
            continue;
        if (!win) {
            win = malloc((size_t)WINDOW * (size_t)max);
            if (!win)
                die("out of memory");
            memset(win, 'w', (size_t)WINDOW * (size_t)max); /* touch every page before timing */
        }
        for (int i = 0; i < n; i++) {
            long iters, warmup;
            bw_iters(list[i], &iters, &warmup);
            if (force_iters > 0)
                iters = force_iters;
            if (force_warmup >= 0)
                warmup = force_warmup;
            bandwidth(rank, list[i], iters, warmup, sbuf, rbuf, win, max);
        }
    }
    free(win);
    free(sbuf);
    free(rbuf);
    MPI_Finalize();
    return 0;
}
