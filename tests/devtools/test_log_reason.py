"""devtools.log_reason: the one line demo.sh prints when a program stopped."""

import json
import subprocess
import sys

from devtools.log_reason import reason
from tests.support.procs import ROOT


def test_the_last_error_event_explains_and_plain_text_is_the_fallback(tmp_path):
    lines = [json.dumps({"level": "info", "event": "worker_placed"}),
             json.dumps({"level": "critical", "event": "engine_load_failed",
                         "error": "SCHP weights file /m.pth: 601 missing keys"}),
             json.dumps({"level": "info", "event": "worker_placed"}), ""]
    assert reason(lines) == "engine_load_failed: SCHP weights file /m.pth: 601 missing keys"
    assert reason(["configuration error: PORT (server.port) 8003 ... in use"]) == \
        "configuration error: PORT (server.port) 8003 ... in use"
    crash = json.dumps({"level": "error", "event": "internal_error",
                        "exc": "Traceback ...\n  File x\nValueError: bad"})
    assert reason([crash]) == "internal_error: ValueError: bad"
    assert reason([]) is None
    log = tmp_path / "x.log"
    log.write_text("\n".join(lines))
    out = subprocess.run([sys.executable, "-m", "devtools.log_reason", str(log)], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("engine_load_failed: ")
