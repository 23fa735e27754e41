#!/usr/bin/env bash
# Builds the Docker image and proves it works, from a clean state, then stops
# everything it started:
#   1. build the image (classic builder, CPU torch; base image bootstrapped with
#      debootstrap when BASE_IMAGE is not given, since no base-image registry may be
#      reachable);
#   2. run it with a stand-in Mask Asset Service on loopback;
#   3. send a photo;  4. check that both masks arrive;
#   5. check that `supervisorctl status` works inside the container;
#   6. check that every process in it runs as the non-root user `qmc`;
#   7. print the image size and what takes the space.
#
#   sudo devtools/docker_smoke.sh            (needs root: dockerd, debootstrap)
#
# Not part of CI (minutes, root). Variables:
#   APP_PORT        the front end's port (the one port setting of this script)
#   DOCKER_HOST     a running daemon to use; unset: a private dockerd is started
#                   (vfs storage, no iptables, no bridge) and stopped at the end
#   BASE_IMAGE      base image to build on; unset: Debian bookworm via debootstrap
#   SMOKE_DIR       scratch folder (default /var/tmp/qmc-docker-smoke)
#   KEEP_IMAGE=1    keep the built image (default: removed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

APP_PORT="${APP_PORT:-8003}"
IMAGE="${IMAGE:-qwen-mask:smoke}"
SMOKE_DIR="${SMOKE_DIR:-/var/tmp/qmc-docker-smoke}"
KEEP_IMAGE="${KEEP_IMAGE:-0}"
PY="$ROOT/venv/bin/python"
CONTAINER="qmc-smoke-$$"
SECRET="smoke-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

say() { printf '[docker_smoke %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { say "FAILED: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (dockerd and debootstrap need it)"
[ -x "$PY" ] || die "no venv/ here; run ./setup.sh first (the receiver and the photo use it)"
mkdir -p "$SMOKE_DIR"

# -- what this run started, undone in reverse by cleanup ------------------------
STARTED_DOCKERD=""; RECEIVER_PID=""; MADE_WHEELHOUSE=""; MADE_CA=""; BUILT=""
cleanup() {
    local rc=$?
    set +e
    if [ -n "$BUILT" ] && docker container inspect "$CONTAINER" >/dev/null 2>&1; then
        if [ "$rc" != 0 ]; then
            say "container log (last 40 lines):"; docker logs --tail 40 "$CONTAINER" 2>&1
        fi
        docker rm -f -v "$CONTAINER" >/dev/null
        say "removed container $CONTAINER"
    fi
    [ -n "$RECEIVER_PID" ] && kill "$RECEIVER_PID" 2>/dev/null && wait "$RECEIVER_PID" 2>/dev/null
    if [ -n "$BUILT" ] && [ "$KEEP_IMAGE" != 1 ]; then
        docker rmi -f "$IMAGE" >/dev/null 2>&1 && say "removed image $IMAGE"
    fi
    if [ -n "$STARTED_DOCKERD" ]; then
        kill "$STARTED_DOCKERD" 2>/dev/null
        for _ in $(seq 1 30); do kill -0 "$STARTED_DOCKERD" 2>/dev/null || break; sleep 1; done
        say "stopped the private dockerd (pid $STARTED_DOCKERD)"
        # vfs keeps a full copy of every layer: leave no image data behind unless asked.
        umount "$SMOKE_DIR/docker-exec/netns/default" 2>/dev/null   # dockerd's own mount
        [ "$KEEP_IMAGE" = 1 ] || rm -rf "$SMOKE_DIR/docker-data" "$SMOKE_DIR/docker-exec"
    fi
    [ -n "$MADE_WHEELHOUSE" ] && rm -rf "$ROOT/docker/wheelhouse"
    [ -n "$MADE_CA" ] && rm -f "$ROOT/docker/pip-ca.crt"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# -- tools -----------------------------------------------------------------------
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    say "installing docker.io and debootstrap from Debian"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi

# -- the daemon ----------------------------------------------------------------
if [ -z "${DOCKER_HOST:-}" ] || ! docker version >/dev/null 2>&1; then
    export DOCKER_HOST="unix://$SMOKE_DIR/docker.sock"
    say "starting a private dockerd on $DOCKER_HOST (vfs, no iptables, no bridge)"
    dockerd -H "$DOCKER_HOST" --data-root "$SMOKE_DIR/docker-data" --exec-root "$SMOKE_DIR/docker-exec" \
        --pidfile "$SMOKE_DIR/dockerd.pid" --storage-driver vfs --iptables=false --bridge=none \
        > "$SMOKE_DIR/dockerd.log" 2>&1 &
    STARTED_DOCKERD=$!
    for _ in $(seq 1 60); do docker version >/dev/null 2>&1 && break; sleep 1; done
    docker version >/dev/null 2>&1 || die "dockerd did not start (see $SMOKE_DIR/dockerd.log)"
fi

# -- 1. build --------------------------------------------------------------------
if [ -z "${BASE_IMAGE:-}" ]; then
    BASE_IMAGE="qmc-base:bookworm"
    if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        if [ ! -x "$SMOKE_DIR/rootfs/bin/sh" ]; then
            say "debootstrap: Debian bookworm (minbase) into $SMOKE_DIR/rootfs"
            rm -rf "$SMOKE_DIR/rootfs"
            debootstrap --variant=minbase bookworm "$SMOKE_DIR/rootfs" http://deb.debian.org/debian \
                > "$SMOKE_DIR/debootstrap.log" 2>&1 || die "debootstrap failed (see $SMOKE_DIR/debootstrap.log)"
        fi
        # As official base images are: no downloaded .debs, no package lists (169 MB).
        rm -rf "$SMOKE_DIR"/rootfs/var/cache/apt/archives/*.deb "$SMOKE_DIR"/rootfs/var/cache/apt/*.bin \
               "$SMOKE_DIR"/rootfs/var/lib/apt/lists/*
        say "importing the rootfs as $BASE_IMAGE"
        tar -C "$SMOKE_DIR/rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
    fi
fi

# The CPU torch wheel from this machine's disk (pip finds it through its config) and the
# package proxy's CA: both optional build inputs, seen by the build stage only.
if ! ls docker/wheelhouse/torch-*.whl >/dev/null 2>&1; then
    torch_pin="$(grep -E '^torch==' requirements.txt | cut -d' ' -f1)"
    MADE_WHEELHOUSE=1
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d docker/wheelhouse "$torch_pin" \
        || { say "no local torch wheel: the build takes torch from the CPU index"; rm -rf docker/wheelhouse; }
fi
if [ ! -f docker/pip-ca.crt ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt docker/pip-ca.crt
    MADE_CA=1
fi
say "building $IMAGE on $BASE_IMAGE (wheelhouse: $(ls docker/wheelhouse 2>/dev/null | tr '\n' ' '))"
BUILT=1
started=$(date +%s)
DOCKER_BUILDKIT=0 docker build --force-rm --network host --build-arg BASE_IMAGE="$BASE_IMAGE" \
    -t "$IMAGE" . > "$SMOKE_DIR/build.log" 2>&1 \
    || { tail -30 "$SMOKE_DIR/build.log"; die "docker build failed (log: $SMOKE_DIR/build.log)"; }
say "built in $(( $(date +%s) - started )) s; $(grep -E '^torch ' "$SMOKE_DIR/build.log" | tail -1)"

# -- 2. run, with a stand-in asset service on loopback ----------------------------
RECEIVER_PORT="$(free_port)"
OUT="$SMOKE_DIR/received"
rm -rf "$OUT"; mkdir -p "$OUT"
"$PY" -m devtools.asset_receiver --port "$RECEIVER_PORT" --out "$OUT" --secret "$SECRET" \
    > "$SMOKE_DIR/receiver.log" 2>&1 &
RECEIVER_PID=$!
# --network host (no bridge here): every port is chosen free on this host.
WORKER_ENDPOINT="tcp://127.0.0.1:$(free_port)"
docker run -d --name "$CONTAINER" --network host \
    -e HOST=127.0.0.1 -e PORT="$APP_PORT" \
    -e BROKER_FRONTEND_ENDPOINT="tcp://127.0.0.1:$(free_port)" \
    -e BROKER_WORKER_BIND="$WORKER_ENDPOINT" -e BROKER_WORKER_ENDPOINT="$WORKER_ENDPOINT" \
    -e BROKER_UPLOADER_ENDPOINT="tcp://127.0.0.1:$(free_port)" \
    -e WORKER_COUNT=1 \
    -e MASK_ASSET_URL="http://127.0.0.1:$RECEIVER_PORT/masks" \
    -e MASK_COMPONENT_SECRET="$SECRET" "$IMAGE" > /dev/null
URL="http://127.0.0.1:$APP_PORT"
say "container $CONTAINER started; waiting for $URL/health"
ready=""
for _ in $(seq 1 180); do
    if curl -fsS "$URL/health" 2>/dev/null | grep -q '"segmentation_ready": *true'; then ready=1; break; fi
    docker container inspect -f '{{.State.Running}}' "$CONTAINER" | grep -q true || die "the container exited"
    sleep 1
done
[ -n "$ready" ] || die "the service did not get ready within 180 s"
say "health: $(curl -fsS "$URL/health")"

# -- 3. send a photo, 4. the masks arrive ------------------------------------------
PHOTO="$SMOKE_DIR/person.jpg"
"$PY" -c "from skimage import data; from PIL import Image; Image.fromarray(data.astronaut()).save('$PHOTO', quality=92)"
JOB_ID="smoke-$(date +%s)"
say "POST /process: $(curl -fsS -F "user_image=@$PHOTO" -F user_id=smoke-user -F "job_id=$JOB_ID" -F provider=qwen "$URL/process")"
for _ in $(seq 1 120); do
    [ -s "$OUT/$JOB_ID/upper_body_mask.png" ] && [ -s "$OUT/$JOB_ID/lower_body_mask.png" ] && break
    sleep 0.5
done
for mask in upper_body_mask lower_body_mask; do
    [ -s "$OUT/$JOB_ID/$mask.png" ] || die "$mask.png did not arrive at the stand-in asset service"
done
"$PY" - "$OUT/$JOB_ID" "$PHOTO" <<'EOF' || die "the masks are not 0/255 PNGs at the photo's size"
import sys, numpy as np
from PIL import Image
folder, photo = sys.argv[1], sys.argv[2]
size = Image.open(photo).size
for name in ("upper_body_mask", "lower_body_mask"):
    img = Image.open(f"{folder}/{name}.png")
    values = set(np.unique(np.asarray(img)).tolist())
    assert img.mode == "L" and img.size == size and values <= {0, 255}, (name, img.mode, img.size, values)
    print(f"  {name}.png: {img.size[0]}x{img.size[1]} L, {100 * (np.asarray(img) == 255).mean():.1f}% set")
EOF
say "masks arrived: $(ls "$OUT/$JOB_ID" | tr '\n' ' ')"
say "job: $(curl -fsS "$URL/jobs/$JOB_ID")"

# -- 5. supervisorctl inside ----------------------------------------------------------
status="$(docker exec "$CONTAINER" venv/bin/supervisorctl -c supervisord.conf status)" \
    || die "supervisorctl status failed: $status"
echo "$status" | sed 's/^/  /'
echo "$status" | grep -qv RUNNING && die "a program is not RUNNING"

# -- 6. non-root --------------------------------------------------------------------
user="$(docker exec "$CONTAINER" id -un)"
[ "$user" = qmc ] || die "docker exec runs as $user, not qmc"
uids="$(docker top "$CONTAINER" -eo pid,uid,args | awk 'NR > 1 {print $2}' | sort -u | tr '\n' ' ')"
qmc_uid="$(docker exec "$CONTAINER" id -u)"
[ "$uids" = "$qmc_uid " ] || die "processes run as uids $uids (qmc is $qmc_uid)"
say "every process runs as qmc (uid $qmc_uid, not root): $(docker top "$CONTAINER" -eo pid,args | awk 'NR > 1' | wc -l) processes"

# -- 7. size ------------------------------------------------------------------------
bytes="$(docker image inspect -f '{{.Size}}' "$IMAGE")"
say "image $IMAGE: $(awk -v b="$bytes" 'BEGIN {printf "%.2f GB (%.0f MiB)", b / 1e9, b / 1048576}')"
say "largest layers:"
docker history --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE" | sort -h -r | head -6 | cut -c1-110 | sed 's/^/  /'
say "largest parts of the image (MiB):"
docker exec "$CONTAINER" sh -c 'du -sm /app/venv/lib/python3*/site-packages/* /usr/lib/x86_64-linux-gnu /usr/lib/python3* /usr/share 2>/dev/null | sort -rn | head -12' | sed 's/^/  /'
say "OK"
