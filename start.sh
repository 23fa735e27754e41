#!/usr/bin/env bash
# Starts the whole service (broker, uploader, workers, front end) under
# supervisord in the foreground. Control it from another shell with
#   venv/bin/supervisorctl -c supervisord.conf status
# Settings: config.yaml plus the environment variables listed in the README.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x venv/bin/python ]; then
    echo "start.sh: no venv/ here; run ./setup.sh first" >&2
    exit 1
fi
# Check every setting, and what each process will need (upload URL and secret, the
# weights file, free ports, writable folders), before anything starts: a problem
# prints one line naming the setting and the fix, and nothing is started.
venv/bin/python -m common.settings_check
WORKER_COUNT="$(venv/bin/python -m common.settings_check --print workers.count)"
export WORKER_COUNT
mkdir -p var/run var/log
chmod 700 var var/run
exec venv/bin/supervisord -c supervisord.conf "$@"
