# Shared helpers for the server scripts in this folder (sourced, not run).
# shellcheck shell=bash

PATH=$PATH:/usr/sbin:/sbin

die() { echo "$PROG: $*" >&2; exit 1; }

# log_mark FILE...: remember how long each log is now, so that die_log shows
# only what was written after (by the server this script started).
declare -A LOG_MARK=()
log_mark() {
  local f
  for f in "$@"; do LOG_MARK[$f]=$( { wc -l <"$f"; } 2>/dev/null || echo 0); done
}

# die_log MSG LOGFILE...: fail with the last lines of each server log named
# (those written since its log_mark, if it has one).
die_log() {
  local msg=$1; shift
  echo "$PROG: $msg" >&2
  local f from
  for f in "$@"; do
    [[ -s $f ]] || continue
    from=$(( ${LOG_MARK[$f]:-0} + 1 ))
    if [[ -z $(tail -n +"$from" "$f" | head -c 1) ]]; then
      echo "---- (nothing new in $f) ----" >&2
      continue
    fi
    echo "---- last lines of $f ----" >&2
    tail -n +"$from" "$f" | tail -n 25 >&2
  done
  exit 1
}

# abs_dir DIR: create DIR and print its absolute path.
abs_dir() {
  mkdir -p -- "$1" || die "cannot create directory $1"
  (cd -- "$1" && pwd -P)
}

# port_is_free PORT: nothing accepts connections on 127.0.0.1:PORT and it can be bound.
port_is_free() {
  local port=$1
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$port" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
  else
    ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
  fi
}

# free_port: print a port on 127.0.0.1 that is free now (the kernel's choice
# where python3 exists, else a random one from 20000-59999 that tests free).
free_port() {
  local p i
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' && return 0
  fi
  for i in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    if port_is_free "$p"; then echo "$p"; return 0; fi
  done
  die "found no free port on 127.0.0.1"
}

# pid_alive PID: the process exists and is not a zombie.
pid_alive() {
  local pid=$1 state
  [[ -n $pid && -d /proc/$pid ]] || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $state != Z && $state != X ]]
}

# pid_is PID NAME: the process is alive and its executable name is NAME.
pid_is() {
  local pid=$1 name=$2 comm
  pid_alive "$pid" || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ $comm == "$name"* ]]
}

# read_pid FILE: print the PID in FILE, or nothing.
read_pid() { if [[ -s $1 ]]; then tr -dc '0-9' <"$1"; fi; }

# stop_pid PID NAME TIMEOUT [--kill]: SIGTERM (or SIGKILL with --kill), wait
# up to TIMEOUT seconds, then SIGKILL; waits until the process is gone.
stop_pid() {
  local pid=$1 name=$2 timeout=$3 mode=${4:-} i
  pid_is "$pid" "$name" || return 0
  if [[ $mode == --kill ]]; then
    kill -KILL "$pid" 2>/dev/null || true
  else
    kill -TERM "$pid" 2>/dev/null || true
  fi
  for ((i = 0; i < timeout * 10; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  echo "$PROG: $name (pid $pid) still alive after ${timeout}s; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  die "$name (pid $pid) did not die after SIGKILL"
}
