#!/usr/bin/env bash
# Starts the whole service with a local stand-in for the Mask Asset Service,
# sends one photo through it, prints where the masks landed, and keeps the
# service running until Ctrl-C (which stops everything it started).
#
#   ./demo.sh [PHOTO.jpg|PHOTO.png]     (default: a sample photo of a person)
#
# If the service cannot start (a port in use, a bad setting, a program that went
# FATAL) it says why within seconds, from the logs in var/log/, and exits 1.
set -euo pipefail
cd "$(dirname "$0")"
[ -x venv/bin/python ] || ./setup.sh
mkdir -p var/log out
PORT="${PORT:-8003}"
RECEIVER_PORT="${RECEIVER_PORT:-8099}"
READY_TIMEOUT_S="${READY_TIMEOUT_S:-180}"
export PORT
export MASK_COMPONENT_SECRET="${MASK_COMPONENT_SECRET:-demo-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')}"
export MASK_ASSET_URL="http://127.0.0.1:${RECEIVER_PORT}/masks"
CTL=(venv/bin/supervisorctl -c supervisord.conf)

receiver_pid=""
service_pid=""
cleanup() {
    # Only a supervisord this script started is shut down (never another one's socket).
    if [ -n "$service_pid" ] && kill -0 "$service_pid" 2>/dev/null; then
        "${CTL[@]}" shutdown >/dev/null 2>&1 || kill "$service_pid" 2>/dev/null || true
    fi
    if [ -n "$receiver_pid" ]; then kill "$receiver_pid" 2>/dev/null || true; fi
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

fail() {  # fail LOG_FILE WHAT: print why, from the log, and stop
    echo "demo: $2: $(venv/bin/python -m devtools.log_reason "$1")" >&2
    echo "demo: full log: $1" >&2
    exit 1
}

venv/bin/python -m devtools.asset_receiver --port "$RECEIVER_PORT" --out out \
    --secret "$MASK_COMPONENT_SECRET" > var/log/receiver.log 2>&1 &
receiver_pid=$!
./start.sh > var/log/start.log 2>&1 &
service_pid=$!

echo "demo: waiting for the service on port $PORT (logs in var/log/) ..."
ready=""
for _ in $(seq 1 "$((READY_TIMEOUT_S * 2))"); do
    kill -0 "$receiver_pid" 2>/dev/null || fail var/log/receiver.log "the stand-in asset service stopped"
    kill -0 "$service_pid" 2>/dev/null || fail var/log/start.log "the service did not start"
    # A program supervisord gave up on (FATAL), or that stopped for good (EXITED:
    # a worker whose weights do not load, see supervisord.conf).
    stopped="$("${CTL[@]}" status 2>/dev/null | awk '$2 == "FATAL" || $2 == "EXITED" {print $1 " went " $2; exit}' || true)"
    if [ -n "$stopped" ]; then
        program="${stopped%% *}"
        fail "var/log/${program#*:}.log" "$stopped"
    fi
    if curl -fsS "http://127.0.0.1:${PORT}/health" 2>/dev/null | grep -q '"segmentation_ready": *true'; then
        ready=1
        break
    fi
    sleep 0.5
done
if [ -z "$ready" ]; then
    echo "demo: the service was not ready after ${READY_TIMEOUT_S} s; /health says:" >&2
    curl -sS "http://127.0.0.1:${PORT}/health" >&2 || true
    echo >&2
    exit 1
fi
curl -fsS "http://127.0.0.1:${PORT}/health"; echo

PHOTO="${1:-var/demo-photo.jpg}"
if [ ! -f "$PHOTO" ]; then
    venv/bin/python -c "from skimage import data; from PIL import Image; Image.fromarray(data.astronaut()).save('$PHOTO', quality=92)"
fi
JOB_ID="demo-$(date +%s)"
curl -fsS -F "user_image=@${PHOTO}" -F user_id=demo-user -F "job_id=${JOB_ID}" -F provider=qwen \
    "http://127.0.0.1:${PORT}/process"; echo
for _ in $(seq 1 120); do
    state="$(curl -fsS "http://127.0.0.1:${PORT}/jobs/${JOB_ID}" | venv/bin/python -c 'import json,sys; print(json.load(sys.stdin).get("state",""))')"
    [ "$state" = "done" ] || [ "$state" = "failed" ] && break
    sleep 0.5
done
curl -fsS "http://127.0.0.1:${PORT}/jobs/${JOB_ID}"; echo
echo "demo: masks for ${JOB_ID} are in out/${JOB_ID}/ ; metrics: http://127.0.0.1:${PORT}/metrics"
echo "demo: the service keeps running (Ctrl-C stops it)."
wait
