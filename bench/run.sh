#!/usr/bin/env bash
# bench/run.sh: pmrun against a reference implementation, side by side.
#
# Each benchmark is a pair of commands that print lines of the form
#   <test> bytes=<b> value=<v>
# one run under pmrun, one under the reference (Open MPI over TCP for now). The
# pair runs REPS times, alternating reference then pmrun so that both see the
# same machine load, and bench/summarize.py prints the medians side by side and
# one line per measurement:
#   BENCH <test> np=<n> bytes=<b> pmrun=<v> ref=<v> ratio=<pmrun/ref> unit=<us|MBps>
#
# Usage (from anywhere; bin/pmrun must have been built by `make build`):
#   bash bench/run.sh
#   REPS=3 P2P_ARGS="-test latency -sizes 8,1k" bash bench/run.sh
#
# Environment:
#   REPS         repetitions of each pair (default 5)
#   BENCHES      space-separated benchmarks to run (default: all; known: p2p,
#                p2ptcp = pmrun with shared memory off, i.e. its TCP path,
#                coll = the collectives at each of COLL_NP, py_p2p, py_coll,
#                py_startup = the Python benchmarks: the same mpi4py script
#                under pmrun and under mpirun with Debian's python3-mpi4py,
#                pywin = 100 MB from rank 0 to the node's ranks through a
#                shared window against Bcast, both under pmrun (pmrun = window,
#                ref = Bcast), then each of them under pmrun and under mpirun,
#                threads = the threads package's loops against the same loops
#                in C with OpenMP, in one process of THREADS threads,
#                hybrid = examples/mpi/hybrid as one rank of nproc threads
#                against nproc ranks of one thread: hybrid against pure MPI,
#                tasks = pmrun.Executor against ProcessPoolExecutor,
#                mpi4py.futures and Dask distributed, TASK_WORKERS workers
#                each: one pair per reference, see bench/tasks/tasks.py)
#   P2P_ARGS     extra arguments for both p2p programs (-test, -sizes, -iters)
#   COLL_ARGS    extra arguments for both coll programs (-ops, -sizes)
#   COLL_NP      rank counts of the collective benchmarks (default "2 4 8")
#   PYWIN_NP     rank counts of the pywin benchmark (default "2 4")
#   THREADS      threads of the threads benchmark (default: nproc)
#   TASK_WORKERS worker processes of the tasks benchmark (default 2)
#   PY           the Python interpreter of the Python benchmarks (/usr/bin/python3,
#                which has numpy and mpi4py from Debian)
#   RUN_TIMEOUT  seconds after which one run is killed and counted as failed (600)
#   BENCH_OUT    raw results file (default bench/bin/results.txt)
#   PMRUN_BIN    the pmrun launcher (default bin/pmrun)
#
# Adding a benchmark: write a build_<name> function, then add a run_pair call in
# main with its name, rank count, reference label, BENCH name prefix (so that, say,
# Python latency does not collide with Go latency) and the two commands.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

REPS=${REPS:-5}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
BENCH_OUT=${BENCH_OUT:-bench/bin/results.txt}
read -ra P2P_ARGS <<<"${P2P_ARGS:-}"
read -ra COLL_ARGS <<<"${COLL_ARGS:-}"
read -ra COLL_NP <<<"${COLL_NP:-2 4 8}"
read -ra PYWIN_NP <<<"${PYWIN_NP:-2 4}"
PY=${PY:-/usr/bin/python3}

# Open MPI over loopback TCP only (no shared memory), which is what pmrun's TCP
# path is compared against.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# shellcheck disable=SC2054 # "tcp,self" is one argument
MPIRUN=(mpirun --allow-run-as-root --oversubscribe
  --mca pml ob1 --mca btl tcp,self --mca btl_tcp_if_include lo)
PMRUN=("${PMRUN_BIN:-bin/pmrun}")

failures=0

log() { echo "bench: $*" >&2; }
die() {
  log "$*"
  exit 1
}

# ensure_tools installs Open MPI (and the compiler driver and Python the script
# uses) from the distribution when they are missing, without prompting.
ensure_tools() {
  local missing=()
  command -v mpicc >/dev/null 2>&1 || missing+=(libopenmpi-dev)
  command -v mpirun >/dev/null 2>&1 || missing+=(openmpi-bin)
  command -v gcc >/dev/null 2>&1 || missing+=(gcc)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  if selected py_p2p || selected py_coll || selected py_startup || selected pywin || selected tasks; then
    "$PY" -c "import numpy" 2>/dev/null || missing+=(python3-numpy)
    "$PY" -c "import mpi4py" 2>/dev/null || missing+=(python3-mpi4py)
  fi
  if selected tasks; then
    "$PY" -c "import cloudpickle" 2>/dev/null || missing+=(python3-cloudpickle)
    "$PY" -c "import distributed" 2>/dev/null || missing+=(python3-distributed)
  fi
  ((${#missing[@]} == 0)) && return
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    sudo=(sudo)
  fi
  log "installing ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    openmpi-bin libopenmpi-dev gcc python3 "${missing[@]}" >/dev/null
}

build_p2p() {
  mkdir -p bench/bin
  mpicc -O2 -Wall -o bench/bin/osu_p2p bench/osu/p2p.c
  go build -o bench/bin/p2p ./bench/p2p
}

build_coll() {
  mkdir -p bench/bin
  mpicc -O2 -Wall -o bench/bin/osu_coll bench/osu/coll.c
  go build -o bench/bin/coll ./bench/coll
}

build_threads() {
  mkdir -p bench/bin
  gcc -O2 -Wall -fopenmp -o bench/bin/omp_threads bench/threads/omp/omp.c
  go build -o bench/bin/threads ./bench/threads
}

# selected NAME reports whether BENCHES asks for benchmark NAME.
selected() {
  [[ -z ${BENCHES:-} || " $BENCHES " == *" $1 "* ]]
}

# run_one IMPL NAME NP REP CMD... runs one command, and appends each result line
# it prints, tagged with the benchmark, implementation, rank count and
# repetition, to BENCH_OUT. A failed or timed-out run is reported and counted;
# the other runs go on.
run_one() {
  local impl=$1 name=$2 np=$3 rep=$4
  shift 4
  local out err rc=0
  out=$(mktemp) err=$(mktemp)
  timeout --kill-after=10 "$RUN_TIMEOUT" "$@" >"$out" 2>"$err" || rc=$?
  local n
  n=$(grep -cE '(^|[^A-Za-z0-9_])[A-Za-z0-9_]+ bytes=[0-9]+ value=' "$out" || true)
  if ((rc != 0)); then
    failures=$((failures + 1))
    log "rep $rep $name $impl: FAILED (exit $rc): $*"
    sed 's/^/  | /' "$err" | tail -n 20 >&2
  else
    log "rep $rep $name $impl: $n values"
  fi
  sed -E -n "s/^(.*[^A-Za-z0-9_])?([A-Za-z0-9_]+ bytes=[0-9]+ value=[-+0-9.eEinfa]+( alg=[a-z_]+)?).*$/bench=$name impl=$impl np=$np rep=$rep \2/p" \
    "$out" >>"$BENCH_OUT"
  rm -f "$out" "$err"
}

# run_pair NAME NP REF_LABEL PREFIX -- PMRUN_CMD... -- REF_CMD...
# runs the reference and then the pmrun command, REPS times. PREFIX is put in
# front of the test names on the BENCH lines ("" for the Go p2p benchmark).
run_pair() {
  local name=$1 np=$2 label=$3 prefix=$4
  shift 4
  [[ ${1:-} == -- ]] || die "run_pair $name: expected -- before the pmrun command"
  shift
  local pm=() ref=()
  while (($# > 0)) && [[ $1 != -- ]]; do
    pm+=("$1")
    shift
  done
  (($# > 0)) || die "run_pair $name: expected -- before the reference command"
  shift
  ref=("$@")
  echo "#pair bench=$name prefix=$prefix ref=$label" >>"$BENCH_OUT"
  log "$name: pmrun:     ${pm[*]}"
  log "$name: $label: ${ref[*]}"
  local rep
  for ((rep = 1; rep <= REPS; rep++)); do
    run_one ref "$name" "$np" "$rep" "${ref[@]}"
    run_one pmrun "$name" "$np" "$rep" "${pm[@]}"
  done
}

main() {
  [[ $REPS =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer, not '$REPS'"
  [[ -x ${PMRUN[0]} ]] || die "${PMRUN[0]} not found; run 'make build' first"
  ensure_tools
  mkdir -p "$(dirname "$BENCH_OUT")"
  {
    echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -n) cores=$(nproc) reps=$REPS"
    echo "# $(go version) | $(mpirun --version 2>/dev/null | head -n 1)"
  } >"$BENCH_OUT"
  sed 's/^# /bench: /' "$BENCH_OUT" >&2

  if selected p2p || selected p2ptcp; then
    build_p2p
  fi
  if selected p2p; then
    # pmrun as it runs by default: ranks on one node use shared memory.
    run_pair p2p 2 "Open MPI" "" \
      -- "${PMRUN[@]}" -np 2 bench/bin/p2p "${P2P_ARGS[@]}" \
      -- "${MPIRUN[@]}" -np 2 bench/bin/osu_p2p "${P2P_ARGS[@]}"
  fi
  if selected p2ptcp; then
    # pmrun's TCP path (what ranks on different nodes use), same reference.
    run_pair p2ptcp 2 "Open MPI" "tcp_" \
      -- env PMRUN_SHM=off "${PMRUN[@]}" -np 2 bench/bin/p2p "${P2P_ARGS[@]}" \
      -- "${MPIRUN[@]}" -np 2 bench/bin/osu_p2p "${P2P_ARGS[@]}"
  fi

  if selected coll; then
    build_coll
    local np
    for np in "${COLL_NP[@]}"; do
      run_pair coll "$np" "Open MPI" "" \
        -- "${PMRUN[@]}" -np "$np" bench/bin/coll "${COLL_ARGS[@]}" \
        -- "${MPIRUN[@]}" -np "$np" bench/bin/osu_coll "${COLL_ARGS[@]}"
    done
  fi

  if selected py_p2p; then
    run_pair py_p2p 2 "mpi4py+Open MPI" "py_" \
      -- "${PMRUN[@]}" -np 2 --python "$PY" bench/py/osu.py p2p \
      -- "${MPIRUN[@]}" -np 2 "$PY" bench/py/osu.py p2p
  fi
  if selected py_coll; then
    local pnp
    for pnp in "${COLL_NP[@]}"; do
      run_pair py_coll "$pnp" "mpi4py+Open MPI" "py_" \
        -- "${PMRUN[@]}" -np "$pnp" --python "$PY" bench/py/osu.py coll \
        -- "${MPIRUN[@]}" -np "$pnp" "$PY" bench/py/osu.py coll
    done
  fi
  if selected py_startup; then
    # Wall time of "LAUNCHER -np 8 python3 hello.py", median of 5 launches.
    run_pair py_startup 8 "mpi4py+Open MPI" "py_" \
      -- env PY="$PY" bench/py/startup.sh "${PMRUN[@]}" \
      -- env PY="$PY" bench/py/startup.sh "${MPIRUN[@]}"
  fi

  if selected pywin; then
    local wnp
    for wnp in "${PYWIN_NP[@]}"; do
      # The same job two ways under pmrun: the "pmrun" column is the window,
      # the reference column Bcast (ratio < 0.1: the window is 10x faster).
      run_pair pywin "$wnp" "Bcast" "pywin_" \
        -- "${PMRUN[@]}" -np "$wnp" --python "$PY" bench/py/win.py window \
        -- "${PMRUN[@]}" -np "$wnp" --python "$PY" bench/py/win.py bcast
      # Both ways under pmrun and under mpi4py on Open MPI.
      run_pair pywin_ompi "$wnp" "mpi4py+Open MPI" "pywin_" \
        -- "${PMRUN[@]}" -np "$wnp" --python "$PY" bench/py/win.py both \
        -- "${MPIRUN[@]}" -np "$wnp" "$PY" bench/py/win.py both
    done
  fi

  if selected threads; then
    build_threads
    local nt=${THREADS:-$(nproc)}
    run_pair threads 1 "OpenMP" "" \
      -- env PMRUN_THREADS="$nt" bench/bin/threads \
      -- env OMP_NUM_THREADS="$nt" bench/bin/omp_threads
  fi

  if selected hybrid; then
    # The same stencil and cores both ways: one rank whose pool has every
    # core (what --ppn 1 gives on a node) against one single-threaded rank
    # per core. A small rod, where the per-step synchronisation dominates,
    # and a large one, where the update does.
    local nc cells steps
    nc=$(nproc)
    go build -o bench/bin/hybrid ./examples/mpi/hybrid
    for cells in 32768:4000 1048576:200; do
      steps=${cells#*:} cells=${cells%:*}
      run_pair hybrid "$nc" "pure MPI" "" \
        -- "${PMRUN[@]}" -np 1 --threads "$nc" bench/bin/hybrid -time -n "$cells" -steps "$steps" \
        -- "${PMRUN[@]}" -np "$nc" --threads 1 bench/bin/hybrid -time -n "$cells" -steps "$steps"
    done
  fi

  if selected tasks; then
    # The same busy task for every system: calibrated once, here.
    local loops tw=${TASK_WORKERS:-2}
    loops=$(PYTHONPATH=bench/tasks "$PY" bench/tasks/tasks.py calibrate)
    log "tasks: busy task of $loops loops (~20 ms), $tw workers"
    if ! PYTHONPATH=bin/python "$PY" -c "import pmrun; pmrun.Executor" 2>/dev/null; then
      log "tasks: bin/python's pmrun has no Executor: the pmrun runs print nothing (NA); the references run"
    fi
    local tenv=(env PYTHONPATH="$PWD/bench/tasks:$PWD/bin/python" TASKS_BUSY_LOOPS="$loops" PMRUN_PYTHON="$PY")
    local pmtask=("${tenv[@]}" "$PY" bench/tasks/tasks.py pmrun --workers "$tw")
    run_pair tasks_pool "$tw" "ProcessPoolExecutor" "task_pool_" \
      -- "${pmtask[@]}" \
      -- "${tenv[@]}" "$PY" bench/tasks/tasks.py pool --workers "$tw"
    # mpi4py.futures: rank 0 runs the script, the other ranks are its workers;
    # Open MPI's default transports (shared memory), not the TCP-only MPIRUN.
    run_pair tasks_mpi "$tw" "mpi4py.futures+Open MPI" "task_mpi_" \
      -- "${pmtask[@]}" \
      -- "${tenv[@]}" mpirun --allow-run-as-root --oversubscribe -np $((tw + 1)) \
      -x PYTHONPATH -x TASKS_BUSY_LOOPS "$PY" -m mpi4py.futures bench/tasks/tasks.py mpi --workers "$tw"
    run_pair tasks_dask "$tw" "Dask distributed" "task_dask_" \
      -- "${pmtask[@]}" \
      -- "${tenv[@]}" "$PY" bench/tasks/tasks.py dask --workers "$tw"
  fi

  python3 bench/summarize.py "$BENCH_OUT"
  if ((failures > 0)); then
    die "$failures run(s) failed; see above"
  fi
}

main "$@"
