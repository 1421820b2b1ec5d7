#!/usr/bin/env bash
# bench/run.sh: pmrun against a reference implementation, side by side.
#
# Each benchmark is a pair of commands that print lines of the form
#   <test> bytes=<b> value=<v>
# one run under pmrun, one under the reference (Open MPI on the same path:
# see BENCHES). The pair runs REPS times, alternating which side goes first, so
# that both see the same machine load; a failed run's figures are dropped.
# bench/summarize.py prints the medians side by side and one line per
# measurement, tagged with the path compared:
#   BENCH <test> path=<node|tcp> np=<n> bytes=<b> pmrun=<v> ref=<v> ratio=<pmrun/ref> unit=<us|MBps>
#
# Usage (from anywhere; bin/pmrun must have been built by `make build`):
#   bash bench/run.sh
#   REPS=3 P2P_ARGS="-test latency -sizes 8,1k" bash bench/run.sh
#
# Environment:
#   REPS         repetitions of each pair (default 5)
#   BENCHES      space-separated benchmarks to run (default: all). Each MPI
#                benchmark has a pair on each path: NAME (path=node) is pmrun
#                on its default, shared memory, against Open MPI's default on
#                one node (ob1 over vader, tuned collectives); NAMEtcp
#                (path=tcp) is pmrun with PMRUN_SHM=off against Open MPI
#                restricted to TCP. Known: p2p, p2ptcp, coll, colltcp = the
#                collectives at each of COLL_NP, py_p2p, py_p2ptcp, py_coll,
#                py_colltcp, py_objcoll, py_objcolltcp (the object
#                collectives), py_vcoll (the v-variants and Reduce_scatter),
#                py_idioms (Allreduce, Recv without a tag, Sendrecv, an
#                Irecv+Isend+Waitall exchange and irecv().wait() of 8
#                bytes, np 2),
#                py_nbcoll (nonblocking ones), py_startup = the Python benchmarks: the same
#                mpi4py script under pmrun and under mpirun with Debian's
#                python3-mpi4py,
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

# Each path is compared with its counterpart (the BENCH lines say which, by
# path=node|tcp): on one node, pmrun's default (shared memory and the shared
# area) against Open MPI's default there (ob1 over vader shared memory, tuned
# collectives); pmrun with PMRUN_SHM=off, its TCP path (what ranks on
# different nodes use), against Open MPI over loopback TCP only.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# shellcheck disable=SC2054 # "vader,self" and "tcp,self" are one argument each
MPIRUN_NODE=(mpirun --allow-run-as-root --oversubscribe --mca pml ob1 --mca btl vader,self)
# shellcheck disable=SC2054
MPIRUN_TCP=(mpirun --allow-run-as-root --oversubscribe
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
  if selected py_p2p || selected py_p2ptcp || selected py_coll || selected py_colltcp || selected py_objcoll ||
    selected py_objcolltcp || selected py_nbcoll || selected py_vcoll || selected py_idioms || selected py_startup || selected pywin || selected tasks; then
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
# repetition, to BENCH_OUT. A failed or timed-out run is reported and counted,
# and what it printed is dropped; the other runs go on.
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
    log "rep $rep $name $impl: FAILED (exit $rc), its $n values dropped: $*"
    sed 's/^/  | /' "$err" | tail -n 20 >&2
    rm -f "$out" "$err"
    return
  fi
  log "rep $rep $name $impl: $n values"
  sed -E -n "s/^(.*[^A-Za-z0-9_])?([A-Za-z0-9_]+ bytes=[0-9]+ value=[-+0-9.eEinfa]+( alg=[a-z_]+)?).*$/bench=$name impl=$impl np=$np rep=$rep \2/p" \
    "$out" >>"$BENCH_OUT"
  rm -f "$out" "$err"
}

# run_pair NAME NP REF_LABEL PREFIX PATH -- PMRUN_CMD... -- REF_CMD...
# runs both commands REPS times, the reference first in odd repetitions and
# pmrun first in even ones, so that neither always meets the machine as the
# other left it. PREFIX is put in front of the test names on the BENCH lines
# ("" for the Go p2p benchmark); PATH (node or tcp) says which path of both
# is compared.
run_pair() {
  local name=$1 np=$2 label=$3 prefix=$4 path=$5
  shift 5
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
  echo "#pair bench=$name prefix=$prefix path=$path ref=$label" >>"$BENCH_OUT"
  log "$name: pmrun:     ${pm[*]}"
  log "$name: $label: ${ref[*]}"
  local rep
  for ((rep = 1; rep <= REPS; rep++)); do
    if ((rep % 2)); then
      run_one ref "$name" "$np" "$rep" "${ref[@]}"
      run_one pmrun "$name" "$np" "$rep" "${pm[@]}"
    else
      run_one pmrun "$name" "$np" "$rep" "${pm[@]}"
      run_one ref "$name" "$np" "$rep" "${ref[@]}"
    fi
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
    # One node, both on their defaults: pmrun's shared memory against vader.
    run_pair p2p 2 "Open MPI vader" "" node \
      -- "${PMRUN[@]}" -np 2 bench/bin/p2p "${P2P_ARGS[@]}" \
      -- "${MPIRUN_NODE[@]}" -np 2 bench/bin/osu_p2p "${P2P_ARGS[@]}"
  fi
  if selected p2ptcp; then
    # TCP against TCP: pmrun's path between nodes, Open MPI's tcp btl.
    run_pair p2ptcp 2 "Open MPI TCP" "tcp_" tcp \
      -- env PMRUN_SHM=off "${PMRUN[@]}" -np 2 bench/bin/p2p "${P2P_ARGS[@]}" \
      -- "${MPIRUN_TCP[@]}" -np 2 bench/bin/osu_p2p "${P2P_ARGS[@]}"
  fi

  if selected coll || selected colltcp; then
    build_coll
  fi
  local np
  for np in "${COLL_NP[@]}"; do
    if selected coll; then
      run_pair coll "$np" "Open MPI vader" "" node \
        -- "${PMRUN[@]}" -np "$np" bench/bin/coll "${COLL_ARGS[@]}" \
        -- "${MPIRUN_NODE[@]}" -np "$np" bench/bin/osu_coll "${COLL_ARGS[@]}"
    fi
    if selected colltcp; then
      run_pair colltcp "$np" "Open MPI TCP" "tcp_" tcp \
        -- env PMRUN_SHM=off "${PMRUN[@]}" -np "$np" bench/bin/coll "${COLL_ARGS[@]}" \
        -- "${MPIRUN_TCP[@]}" -np "$np" bench/bin/osu_coll "${COLL_ARGS[@]}"
    fi
  done

  if selected py_p2p; then
    run_pair py_p2p 2 "mpi4py+Open MPI vader" "py_" node \
      -- "${PMRUN[@]}" -np 2 --python "$PY" bench/py/osu.py p2p \
      -- "${MPIRUN_NODE[@]}" -np 2 "$PY" bench/py/osu.py p2p
  fi
  if selected py_idioms; then
    run_pair py_idioms 2 "mpi4py+Open MPI vader" "py_" node \
      -- "${PMRUN[@]}" -np 2 --python "$PY" bench/py/idioms.py \
      -- "${MPIRUN_NODE[@]}" -np 2 "$PY" bench/py/idioms.py
  fi
  if selected py_p2ptcp; then
    run_pair py_p2ptcp 2 "mpi4py+Open MPI TCP" "py_tcp_" tcp \
      -- env PMRUN_SHM=off "${PMRUN[@]}" -np 2 --python "$PY" bench/py/osu.py p2p \
      -- "${MPIRUN_TCP[@]}" -np 2 "$PY" bench/py/osu.py p2p
  fi
  local pnp
  for pnp in "${COLL_NP[@]}"; do
    if selected py_coll; then
      run_pair py_coll "$pnp" "mpi4py+Open MPI vader" "py_" node \
        -- "${PMRUN[@]}" -np "$pnp" --python "$PY" bench/py/osu.py coll \
        -- "${MPIRUN_NODE[@]}" -np "$pnp" "$PY" bench/py/osu.py coll
    fi
    if selected py_colltcp; then
      run_pair py_colltcp "$pnp" "mpi4py+Open MPI TCP" "py_tcp_" tcp \
        -- env PMRUN_SHM=off "${PMRUN[@]}" -np "$pnp" --python "$PY" bench/py/osu.py coll \
        -- "${MPIRUN_TCP[@]}" -np "$pnp" "$PY" bench/py/osu.py coll
    fi
    if selected py_objcoll; then
      run_pair py_objcoll "$pnp" "mpi4py+Open MPI vader" "py_" node \
        -- "${PMRUN[@]}" -np "$pnp" --python "$PY" bench/py/osu.py objcoll \
        -- "${MPIRUN_NODE[@]}" -np "$pnp" "$PY" bench/py/osu.py objcoll
    fi
    if selected py_vcoll; then
      run_pair py_vcoll "$pnp" "mpi4py+Open MPI vader" "py_" node \
        -- "${PMRUN[@]}" -np "$pnp" --python "$PY" bench/py/osu.py vcoll \
        -- "${MPIRUN_NODE[@]}" -np "$pnp" "$PY" bench/py/osu.py vcoll
    fi
    if selected py_nbcoll; then
      run_pair py_nbcoll "$pnp" "mpi4py+Open MPI vader" "py_" node \
        -- "${PMRUN[@]}" -np "$pnp" --python "$PY" bench/py/osu.py nbcoll \
        -- "${MPIRUN_NODE[@]}" -np "$pnp" "$PY" bench/py/osu.py nbcoll
    fi
    if selected py_objcolltcp; then
      run_pair py_objcolltcp "$pnp" "mpi4py+Open MPI TCP" "py_tcp_" tcp \
        -- env PMRUN_SHM=off "${PMRUN[@]}" -np "$pnp" --python "$PY" bench/py/osu.py objcoll \
        -- "${MPIRUN_TCP[@]}" -np "$pnp" "$PY" bench/py/osu.py objcoll
    fi
  done
  if selected py_startup; then
    # Wall time of "LAUNCHER -np 8 python3 hello.py", median of 5 launches,
    # each launcher on its default path.
    run_pair py_startup 8 "mpi4py+Open MPI vader" "py_" node \
      -- env PY="$PY" bench/py/startup.sh "${PMRUN[@]}" \
      -- env PY="$PY" bench/py/startup.sh "${MPIRUN_NODE[@]}"
  fi

  if selected pywin; then
    local wnp
    for wnp in "${PYWIN_NP[@]}"; do
      # The same job two ways under pmrun: the "pmrun" column is the window,
      # the reference column Bcast (ratio < 0.1: the window is 10x faster).
      run_pair pywin "$wnp" "Bcast" "pywin_" node \
        -- "${PMRUN[@]}" -np "$wnp" --python "$PY" bench/py/win.py window \
        -- "${PMRUN[@]}" -np "$wnp" --python "$PY" bench/py/win.py bcast
      # Both ways under pmrun and under mpi4py on Open MPI.
      run_pair pywin_ompi "$wnp" "mpi4py+Open MPI vader" "pywin_" node \
        -- "${PMRUN[@]}" -np "$wnp" --python "$PY" bench/py/win.py both \
        -- "${MPIRUN_NODE[@]}" -np "$wnp" "$PY" bench/py/win.py both
    done
  fi

  if selected threads; then
    build_threads
    local nt=${THREADS:-$(nproc)}
    run_pair threads 1 "OpenMP" "" node \
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
      run_pair hybrid "$nc" "pure MPI" "" node \
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
    run_pair tasks_pool "$tw" "ProcessPoolExecutor" "task_pool_" node \
      -- "${pmtask[@]}" \
      -- "${tenv[@]}" "$PY" bench/tasks/tasks.py pool --workers "$tw"
    # mpi4py.futures: rank 0 runs the script, the other ranks are its workers;
    # Open MPI's default transports on one node (shared memory).
    run_pair tasks_mpi "$tw" "mpi4py.futures+Open MPI" "task_mpi_" node \
      -- "${pmtask[@]}" \
      -- "${tenv[@]}" "${MPIRUN_NODE[@]}" -np $((tw + 1)) \
      -x PYTHONPATH -x TASKS_BUSY_LOOPS "$PY" -m mpi4py.futures bench/tasks/tasks.py mpi --workers "$tw"
    run_pair tasks_dask "$tw" "Dask distributed" "task_dask_" node \
      -- "${pmtask[@]}" \
      -- "${tenv[@]}" "$PY" bench/tasks/tasks.py dask --workers "$tw"
  fi

  python3 bench/summarize.py "$BENCH_OUT"
  if ((failures > 0)); then
    die "$failures run(s) failed; see above"
  fi
}

main "$@"
