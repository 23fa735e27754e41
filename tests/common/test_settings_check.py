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


def _good_env(tmp_path):
    from tests.support.procs import free_port
    return {**os.environ, "MASK_ASSET_URL": "http://127.0.0.1:9/masks",
            "MASK_COMPONENT_SECRET": "settings-check-secret", "HOST": "127.0.0.1",
            "PORT": str(free_port()),
            "BROKER_FRONTEND_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
            "BROKER_WORKER_BIND": f"tcp://127.0.0.1:{free_port()}",
            "BROKER_UPLOADER_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
            "TEMP_FOLDER": str(tmp_path / "tmp"), "STATE_DIR": str(tmp_path / "state"),
            "SCHP_WEIGHTS": ""}


def test_full_check_passes_and_a_short_secret_fails_in_one_line(tmp_path):
    env = _good_env(tmp_path)
    ok = _run(env=env)
    assert ok.returncode == 0 and ok.stderr == ""
    bad = _run(env={**env, "MASK_COMPONENT_SECRET": "only-14-chars!"})
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    assert "MASK_COMPONENT_SECRET" in bad.stderr and "at least 16" in bad.stderr
    assert "only-14-chars!" not in bad.stderr
    # a remote worker host has no upload settings: --settings-only skips the start-up checks
    assert _run("--settings-only", env={**env, "MASK_ASSET_URL": ""}).returncode == 0


def test_start_sh_refuses_a_bad_setting_before_anything_starts(tmp_path):
    import socket
    env = _good_env(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", int(env["PORT"])))
        busy.listen()
        out = subprocess.run(["./start.sh"], cwd=ROOT, capture_output=True, text=True,
                             env=env, timeout=60)
    assert out.returncode != 0 and out.stdout == ""
    assert out.stderr.count("\n") == 1
    assert f"PORT (server.port) {env['PORT']}" in out.stderr and "already in use" in out.stderr
    out = subprocess.run(["./start.sh"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**env, "SCHP_WEIGHTS": str(tmp_path / "missing.pth")})
    assert out.returncode != 0 and out.stderr.count("\n") == 1
    assert "SCHP_WEIGHTS (segmentation.schp.weights)" in out.stderr and "no such file" in out.stderr
