# Sourced by the bench/run scripts: builds the release binary, makes a scratch
# directory, prints the machine.
#   IPC_RUN=/path/to/ipc-run   use this binary instead of building one
#   CARGO_TARGET_DIR           honoured by the build, as by cargo
#   BENCH_DIR=/some/dir        keep the generated files there
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
bench_ipc_run
bench_scratch /tmp/ipc-run-bench.XXXXXX

machine() {
    echo "machine: nproc $(nproc); cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); kernel $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "ipc-run: $("$IPC_RUN" --version)"
}

# Peers (installed by bench/peers/setup.sh) and helpers for the side-by-side
# workloads of bench/compare.sh.
#   PEERS_DIR    where setup.sh put the venv and npm peers (~/.cache/ipc-run-peers)
#   RESULTS=dir  each benchmark also writes its rounds as JSON there (for the plots)
peers="${PEERS_DIR:-$HOME/.cache/ipc-run-peers}"
PY="$peers/venv/bin/python"; HONCHO="$peers/venv/bin/honcho"
CONC="$peers/npm/node_modules/.bin/concurrently"
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ]; }
py_has() { [ -x "$PY" ] && "$PY" -c "import $1" 2>/dev/null; }
# helper bench/x/NAME.c: compiles it to $dir/NAME
helper() { cc -O2 -o "$dir/$(basename "$1" .c)" "$1"; }
# json NAME: the --json option for rounds.py/idle.py when RESULTS is set
json() { [ -z "${RESULTS:-}" ] || echo "--json $RESULTS/$1.json"; }
# supervisord_conf FILE N CMD LOG [EXTRA...]: a nodaemon config running N copies of CMD
# (stdout to LOG: NONE or /dev/stdout); EXTRA lines go into the program section.
supervisord_conf() {
    local file=$1 n=$2 cmd=$3 log=$4; shift 4
    {
        printf '[supervisord]\nnodaemon=true\nuser=root\nlogfile=/dev/null\nlogfile_maxbytes=0\n'
        printf 'pidfile=%s.pid\nloglevel=error\n' "$file"
        printf '[program:w]\ncommand=%s\nnumprocs=%s\nprocess_name=%%(program_name)s_%%(process_num)03d\n' "$cmd" "$n"
        printf 'startsecs=0\nredirect_stderr=true\nstdout_logfile=%s\nstdout_logfile_maxbytes=0\n' "$log"
        printf '%s\n' "$@"
    } >"$file"
}
# supervisord_exit_after FILE N: adds to FILE an event listener that stops
# supervisord once N of its programs have exited ("start N and wait").
supervisord_exit_after() {
    printf '[eventlistener:done]\ncommand=env EXPECT=%s python3 %s/bench/peers/sv_listener.py\n' "$2" "$root" >>"$1"
    printf 'events=PROCESS_STATE_EXITED,PROCESS_STATE_FATAL\nbuffer_size=1000\nstartsecs=0\n' >>"$1"
    printf 'autorestart=false\nstdout_logfile=NONE\nstderr_logfile=NONE\n' >>"$1"
}
