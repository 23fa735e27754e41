"""The start-up checks (common.preflight): each failure is one line naming the setting."""

from __future__ import annotations

import dataclasses
import os
import socket
import zipfile

import pytest
import torch

from common.config import ConfigError, load_settings
from common.preflight import (
    check_all,
    check_folders,
    check_ports,
    check_upload,
    check_weights,
    tcp_address,
    weights_header_problem,
)
from tests.segworker.fixtures.schp_checkpoints import (
    as_2019_file,
    as_2020_file,
    cheap_state,
    save_legacy,
)
from tests.support.procs import free_port

SECRET = "preflight-secret-0123"


def settings(tmp_path, **env):
    base = {"MASK_ASSET_URL": "http://127.0.0.1:9/masks", "MASK_COMPONENT_SECRET": SECRET,
            "HOST": "127.0.0.1", "PORT": str(free_port()),
            "BROKER_FRONTEND_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
            "BROKER_WORKER_BIND": f"tcp://127.0.0.1:{free_port()}",
            "BROKER_UPLOADER_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
            "TEMP_FOLDER": str(tmp_path / "tmp"), "STATE_DIR": str(tmp_path / "state")}
    return load_settings(environ={**base, **env})


def message(check, s) -> str:
    with pytest.raises(ConfigError) as info:
        check(s)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_a_good_configuration_passes_every_check(tmp_path):
    check_all(settings(tmp_path))
    assert (tmp_path / "tmp").is_dir() and (tmp_path / "state").is_dir()


@pytest.mark.parametrize("env, expected", [
    ({"MASK_ASSET_URL": ""}, "MASK_ASSET_URL (upload.url) is not set"),
    ({"MASK_COMPONENT_SECRET": ""}, "MASK_COMPONENT_SECRET (upload.secret) is not set"),
    ({"MASK_COMPONENT_SECRET": "fourteen-chars"}, "too short (14 characters): use at least 16"),
    ({"MASK_COMPONENT_SECRET": "sixteen chars ok"}, "printable ASCII without spaces"),
])
def test_upload_settings_name_the_variable_and_the_fix(tmp_path, env, expected):
    text = message(check_upload, settings(tmp_path, **env))
    assert expected in text and "fourteen-chars" not in text


def test_weights_exist_and_look_like_an_schp_checkpoint(tmp_path):
    state = cheap_state("atr")
    good = [save_legacy(as_2020_file(state), tmp_path / "2020.pth"),
            save_legacy(as_2019_file(state), tmp_path / "2019.pth")]
    torch.save(as_2020_file(state), tmp_path / "zip.pth")
    for path in [*good, tmp_path / "zip.pth"]:
        assert weights_header_problem(path) is None, path
        check_weights(settings(tmp_path, SCHP_WEIGHTS=str(path)))
    missing = message(check_weights, settings(tmp_path, SCHP_WEIGHTS=str(tmp_path / "no.pth")))
    assert missing.startswith("SCHP_WEIGHTS (segmentation.schp.weights)") and "no such file" in missing
    (tmp_path / "notes.txt").write_text("hello")
    assert "not a PyTorch checkpoint" in message(
        check_weights, settings(tmp_path, SCHP_WEIGHTS=str(tmp_path / "notes.txt")))
    torch.save({"fc.weight": torch.zeros(2)}, tmp_path / "other.pth")
    assert "not an SCHP checkpoint" in message(
        check_weights, settings(tmp_path, SCHP_WEIGHTS=str(tmp_path / "other.pth")))
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as z:
        z.writestr("readme", "x")
    assert "no data.pkl" in message(
        check_weights, settings(tmp_path, SCHP_WEIGHTS=str(tmp_path / "plain.zip")))
    # the parser engine never reads the SCHP file; SCHP without weights is refused
    check_weights(settings(tmp_path, SCHP_WEIGHTS=str(tmp_path / "no.pth"),
                           SEGMENTATION_ENGINE="parser"))
    assert "SEGMENTATION_ENGINE=schp needs it" in message(
        check_weights, settings(tmp_path, SEGMENTATION_ENGINE="schp"))


def test_busy_ports_are_named_with_their_setting(tmp_path):
    s = settings(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", s.server.port))
        busy.listen()
        text = message(check_ports, s)
    assert text.startswith(f"PORT (server.port) {s.server.port} on 127.0.0.1") and "in use" in text
    host, port = tcp_address(s.broker.uploader_endpoint)
    with socket.socket() as busy:
        busy.bind((host, port))
        busy.listen()
        text = message(check_ports, s)
    assert text.startswith("BROKER_UPLOADER_ENDPOINT (broker.uploader_endpoint)")
    check_ports(s)   # free again
    assert tcp_address("tcp://*:5556") == ("0.0.0.0", 5556)
    assert tcp_address("ipc:///tmp/x") is None and tcp_address("tcp://127.0.0.1:*") is None
    wrong = dataclasses.replace(s, server=dataclasses.replace(s.server, host="192.0.2.1"))
    assert "not an address of this host" in message(check_ports, wrong)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_state_folder_is_named_when_not_root(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert message(check_folders, settings(tmp_path, STATE_DIR=str(locked))).startswith("STATE_DIR")


def test_a_state_folder_that_is_a_file_is_named(tmp_path):
    (tmp_path / "afile").write_text("x")
    text = message(check_folders, settings(tmp_path, TEMP_FOLDER=str(tmp_path / "afile")))
    assert text.startswith("TEMP_FOLDER (paths.temp_folder)") and "not writable" in text


def test_a_configured_parser_file_and_its_checksum_must_exist(tmp_path):
    from common.preflight import check_parser_weights
    weights = tmp_path / "parser.pt"
    assert "parser.pt is missing" in message(
        check_parser_weights, settings(tmp_path, PARSER_WEIGHTS=str(weights)))
    weights.write_bytes(b"x")
    assert "parser.pt.sha256 is missing" in message(
        check_parser_weights, settings(tmp_path, PARSER_WEIGHTS=str(weights)))
    (tmp_path / "parser.pt.sha256").write_text("0" * 64)
    check_parser_weights(settings(tmp_path, PARSER_WEIGHTS=str(weights)))
    check_parser_weights(settings(tmp_path))  # the shipped file: the workers check it
