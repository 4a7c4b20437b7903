# shellcheck shell=bash
# daemon.sh: sourced by the scripts that start and stop daemons themselves (no systemd here):
# whether a pid file names a live process of a given name, and a deadline-based wait. Uses
# LOG_PREFIX for its messages.

# live_pid PIDFILE COMM: prints the pid in PIDFILE when that process is alive (not a zombie) and its
# /proc/PID/comm is COMM, so a stale pid file whose pid was reused is not taken for it. comm is cut
# to 15 characters; a process's worker threads may rename themselves, but /proc/PID/comm is the main
# thread's name.
live_pid() {
  local pidfile=$1 comm=$2 pid state
  [[ -r $pidfile ]] || return 1
  pid=$(tr -dc '0-9' <"$pidfile")
  [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] || return 1
  # A killed daemon stays a zombie until its parent (here PID 1) reaps it: not running.
  state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $state != Z && $state != X ]] || return 1
  echo "$pid"
}

# wait_for SECONDS DESCRIPTION CMD...: runs CMD every 0.1 s until it succeeds; returns 1 at the deadline.
wait_for() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "${LOG_PREFIX:-hci}: timed out after ${timeout}s waiting for: $what" >&2
      return 1
    fi
    sleep 0.1
  done
}

# pid_gone PID: the process has exited (a zombie waiting to be reaped counts as gone).
pid_gone() {
  [[ ! -d /proc/$1 ]] || [[ $(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null) == [ZX] ]]
}

# stop_pid NAME PID: SIGTERM, up to 20 s to exit, then SIGKILL and up to 10 s more; fails (through die)
# when it still runs. Logs the stop.
stop_pid() {
  local name=$1 pid=$2
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_for 20 "$name (pid $pid) to exit" pid_gone "$pid"; then
    log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_for 10 "$name (pid $pid) to die" pid_gone "$pid" || die "$name pid $pid does not die"
  fi
  log "$name (pid $pid) stopped"
}
