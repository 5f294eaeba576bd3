#!/usr/bin/env bash
# Start, stop or describe a private Docker engine for this project.
#
#   infra/ci/docker-engine.sh start   # idempotent; prints `export DOCKER_HOST=...` on stdout
#   infra/ci/docker-engine.sh stop    # stops only the daemon this script started (by its pidfile)
#   infra/ci/docker-engine.sh env     # prints `export DOCKER_HOST=...` (does not start anything)
#   infra/ci/docker-engine.sh status  # exit 0 when the engine answers
#
# Why a private daemon: these machines have no systemd and no running engine, and CI runs on a fresh
# clone as root. Everything the daemon owns (data root, exec root, pidfile, socket, log) lives under one
# folder, CLIP_DOCKER_ROOT (default /var/tmp/clip-lambda-docker: outside the work tree so that build
# contexts never see it, and outside any clone so that image layers, e.g. the debootstrap base, are
# cached between CI runs on the same machine). A daemon killed at a session stop leaves a pidfile and a
# socket behind that would make the next start fail: `start` removes them when their process is gone.
set -euo pipefail

ROOT="${CLIP_DOCKER_ROOT:-/var/tmp/clip-lambda-docker}"
SOCK="$ROOT/docker.sock"
PIDFILE="$ROOT/docker.pid"
LOG="$ROOT/dockerd.log"
START_TIMEOUT="${CLIP_DOCKER_START_TIMEOUT:-60}"
export DOCKER_HOST="unix://$SOCK"

log() { echo "docker-engine: $*" >&2; }

daemon_pid() {
    # Prints the pid of our daemon if it is alive, nothing otherwise.
    [[ -f "$PIDFILE" ]] || return 0
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    # A pid from a stale file may have been reused by another process: only a dockerd counts. A killed
    # daemon whose parent is gone can linger as a zombie (state Z) that kill -0 still finds: not alive.
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" == dockerd ]] || return 0
    local stat
    stat="$(cat "/proc/$pid/stat" 2>/dev/null || true)"
    stat="${stat##*) }" # fields after "pid (comm) ": the first is the state
    [[ "${stat%% *}" != Z ]] || return 0
    echo "$pid"
}

answers() { docker info >/dev/null 2>&1; }

print_env() { echo "export DOCKER_HOST=$DOCKER_HOST"; }

start() {
    if ! command -v dockerd >/dev/null 2>&1; then
        log "dockerd not found: apt-get install -y docker.io"
        return 1
    fi
    mkdir -p "$ROOT/data" "$ROOT/exec"
    if [[ -n "$(daemon_pid)" ]] && answers; then
        log "already running (pid $(daemon_pid)), $DOCKER_HOST"
        print_env
        return 0
    fi
    if [[ -n "$(daemon_pid)" ]]; then
        # Alive but not answering: give it the usual start time before declaring it broken.
        log "daemon pid $(daemon_pid) exists but does not answer yet; waiting"
    else
        # Stale leftovers of a killed daemon (its containerd too) block a new start.
        rm -f "$PIDFILE" "$SOCK" "$ROOT/exec/containerd/containerd.pid"
        log "starting dockerd (root $ROOT, log $LOG)"
        # setsid: the daemon must outlive the shell that started it (make, pytest, CI steps).
        # --iptables stays on: `sam local invoke` publishes container ports on the default bridge.
        setsid dockerd \
            --data-root "$ROOT/data" \
            --exec-root "$ROOT/exec" \
            --pidfile "$PIDFILE" \
            --host "$DOCKER_HOST" \
            --group root \
            >>"$LOG" 2>&1 </dev/null &
    fi
    local waited=0
    until answers; do
        if (( waited >= START_TIMEOUT )); then
            log "dockerd did not answer within ${START_TIMEOUT}s; last log lines:"
            tail -n 30 "$LOG" >&2 || true
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "ready after ${waited}s: $DOCKER_HOST"
    print_env
}

stop() {
    local pid
    pid="$(daemon_pid)"
    if [[ -z "$pid" ]]; then
        log "not running"
        rm -f "$PIDFILE" "$SOCK"
        return 0
    fi
    log "stopping dockerd pid $pid"
    kill -TERM "$pid"
    # dockerd stops its containers (10 s grace each) and its containerd before exiting.
    local waited=0
    while kill -0 "$pid" 2>/dev/null; do
        if (( waited >= 60 )); then
            log "dockerd pid $pid still alive after 60s; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 1
        waited=$((waited + 1))
    done
    rm -f "$PIDFILE" "$SOCK"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    env) print_env ;;
    status) answers ;;
    *)
        echo "usage: $0 start|stop|env|status" >&2
        exit 2
        ;;
esac
