#!/usr/bin/env bash
# Starts the whole service with a local stand-in for the Mask Asset Service,
# sends one photo through it, prints where the masks landed, and keeps the
# service running until Ctrl-C (which stops everything it started).
#
#   ./demo.sh [PHOTO.jpg|PHOTO.png]     (default: a sample photo of a person)
set -euo pipefail
cd "$(dirname "$0")"
[ -x venv/bin/python ] || ./setup.sh
mkdir -p var/log out
PORT="${PORT:-8003}"
RECEIVER_PORT="${RECEIVER_PORT:-8099}"
export PORT
export MASK_COMPONENT_SECRET="${MASK_COMPONENT_SECRET:-demo-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')}"
export MASK_ASSET_URL="http://127.0.0.1:${RECEIVER_PORT}/masks"

pids=()
cleanup() {
    venv/bin/supervisorctl -c supervisord.conf shutdown >/dev/null 2>&1 || true
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

venv/bin/python -m devtools.asset_receiver --port "$RECEIVER_PORT" --out out \
    --secret "$MASK_COMPONENT_SECRET" > var/log/receiver.log 2>&1 &
pids+=($!)
./start.sh > var/log/start.log 2>&1 &
pids+=($!)

echo "demo: waiting for the service on port $PORT (logs in var/log/) ..."
for _ in $(seq 1 180); do
    if curl -fsS "http://127.0.0.1:${PORT}/health" 2>/dev/null | grep -q '"segmentation_ready": *true'; then
        break
    fi
    sleep 1
done
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
echo "demo: masks for ${JOB_ID} are in out/${JOB_ID}/ ; the service keeps running (Ctrl-C stops it)."
wait
