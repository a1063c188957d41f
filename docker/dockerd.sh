#!/usr/bin/env bash
# Start or stop a Docker engine for the image tests on machines without a running one (CI, sandboxes).
#
#   docker/dockerd.sh start    start dockerd in the background unless an engine already answers
#   docker/dockerd.sh stop     stop the dockerd this script started (by the PID it recorded), nothing else
#   docker/dockerd.sh status   say whether an engine answers and whether this script started it
#
# State (PID file, log) lives in $DOCKERD_STATE_DIR (default /var/tmp/forecaster-dockerd).
set -euo pipefail

STATE_DIR="${DOCKERD_STATE_DIR:-/var/tmp/forecaster-dockerd}"
PID_FILE="$STATE_DIR/dockerd.pid"
LOG_FILE="$STATE_DIR/dockerd.log"
START_TIMEOUT="${DOCKERD_START_TIMEOUT:-60}"

log() { echo "[dockerd.sh] $*" >&2; }
die() { log "error: $*"; exit 1; }
engine_answers() { timeout 10 docker info >/dev/null 2>&1; }
recorded_pid() {
    # The recorded PID, if that process is still a dockerd (PIDs get reused).
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]] && echo "$pid"
}

start() {
    if engine_answers; then
        log "a Docker engine already answers; not starting another"
        return 0
    fi
    command -v dockerd >/dev/null || die "dockerd not found: apt-get install -y docker.io"
    command -v docker >/dev/null || die "docker CLI not found: apt-get install -y docker.io"
    [[ $EUID -eq 0 ]] || die "dockerd needs root: run this script with sudo"
    if pid="$(recorded_pid)"; then
        log "dockerd (PID $pid) is running but does not answer yet"
    else
        mkdir -p "$STATE_DIR"
        nohup dockerd >"$LOG_FILE" 2>&1 </dev/null &
        echo $! >"$PID_FILE"
        log "started dockerd (PID $!, log $LOG_FILE)"
    fi
    local waited=0
    until engine_answers; do
        if ! recorded_pid >/dev/null; then
            tail -n 20 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            die "dockerd exited during start-up (log above, full log $LOG_FILE)"
        fi
        ((waited >= START_TIMEOUT)) && die "dockerd did not answer within ${START_TIMEOUT}s (log $LOG_FILE)"
        sleep 1
        waited=$((waited + 1))
    done
    log "engine ready after ${waited}s"
}

stop() {
    local pid
    if ! pid="$(recorded_pid)"; then
        rm -f "$PID_FILE"
        log "no dockerd started by this script is running; nothing to stop"
        return 0
    fi
    kill -TERM "$pid"
    for _ in $(seq 1 30); do
        [[ -d "/proc/$pid" ]] || break
        sleep 1
    done
    if [[ -d "/proc/$pid" ]]; then
        die "dockerd (PID $pid) still running 30 s after SIGTERM"
    fi
    rm -f "$PID_FILE"
    log "stopped dockerd (PID $pid)"
}

status() {
    local pid
    if pid="$(recorded_pid)"; then log "dockerd started by this script: PID $pid"; fi
    if engine_answers; then
        log "engine answers"
    else
        log "no engine answers"
        return 1
    fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
