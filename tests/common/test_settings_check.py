import os
import subprocess
import sys

from tests.support.procs import ROOT


def _run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "common.settings_check", *args], cwd=ROOT,
                          capture_output=True, text=True, env=env)


def test_prints_one_setting_and_names_a_bad_one():
    assert _run("--print", "workers.count").stdout.strip() == "2"
    bad = _run(env={**os.environ, "PORT": "eighty"})
    assert bad.returncode == 1 and "server.port (PORT)" in bad.stderr


def test_secrets_are_never_printed():
    out = _run("--print", "upload.secret",
               env={**os.environ, "MASK_COMPONENT_SECRET": "very-secret-value-123"})
    assert out.returncode == 1 and "very-secret-value-123" not in out.stdout + out.stderr
