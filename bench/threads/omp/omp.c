/* omp.c: the loops of bench/threads/main.go with OpenMP, the reference for
 * pmrun's threads package. Prints "<test> bytes=<b> value=<us>" lines, the
 * median wall time of one loop over REPS timed runs, and the CPU time the
 * process uses while idle for one second after the loops.
 *
 *   OMP_NUM_THREADS=2 ./omp_threads [-n items] [-m uneven-items]
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define REPS 11

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double cpu_us(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* uneven is the body of the uneven loops: a floating-point recurrence of i
 * steps, which the compiler cannot shorten. */
static double uneven(long i) {
  double s = 0;
  for (long k = 0; k < i; k++) s = s * 0.999999 + 1;
  return s;
}

static double *a;
static long n = 10000000, m = 4000;

static void trivial_static(void) {
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; i++) a[i] = (double)i * 0.5;
}

static void uneven_dynamic(void) {
#pragma omp parallel for schedule(dynamic, 16)
  for (long i = 0; i < m; i++) a[i] = uneven(i);
}

static void uneven_static(void) {
#pragma omp parallel for schedule(static)
  for (long i = 0; i < m; i++) a[i] = uneven(i);
}

/* measure prints the median time of REPS runs of f after one warm-up run. */
static void measure(const char *name, long bytes, void (*f)(void)) {
  double t[REPS];
  f();
  for (int r = 0; r < REPS; r++) {
    double t0 = now_us();
    f();
    t[r] = now_us() - t0;
  }
  qsort(t, REPS, sizeof t[0], cmp);
  printf("%s bytes=%ld value=%.2f\n", name, bytes, t[REPS / 2]);
  fflush(stdout);
}

int main(int argc, char **argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "-n")) n = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "-m")) m = atol(argv[i + 1]);
    else {
      fprintf(stderr, "usage: %s [-n items] [-m uneven-items]\n", argv[0]);
      return 2;
    }
  }
  a = calloc(n > m ? n : m, sizeof *a);
  if (!a) return 1;
  fprintf(stderr, "omp: %d threads\n", omp_get_max_threads());
  /* The same C loop is the reference for For per index, its floor (plain
   threads calling a function value per index, in Go) and ForRange. */
  measure("threads_for_index", n * 8, trivial_static);
  measure("threads_for_index_floor", n * 8, trivial_static);
  measure("threads_for_range", n * 8, trivial_static);
  measure("threads_uneven_dynamic", m * 8, uneven_dynamic);
  measure("threads_uneven_static", m * 8, uneven_static);
  double c0 = cpu_us(), t0 = now_us();
  struct timespec sec = {1, 0};
  nanosleep(&sec, NULL);
  printf("threads_idle_cpu bytes=0 value=%.2f\n", (cpu_us() - c0) * 1e6 / (now_us() - t0));
  return a[n / 2] < 0;
}
