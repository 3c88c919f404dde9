"""tensorboard over real SSH on a fresh container: the whole `provision all`, TensorBoard
answering on 127.0.0.1 only, `provision tunnel` reaching it, and back after a reboot."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from common import free_port

from hostrun import reboot_boot_ids

pytestmark = pytest.mark.container


def test_all_steps_apply_converge_and_verify(container, provision):
    first = provision("all", "--host", container.name)
    assert "install TensorBoard into /opt/provision/tensorboard" in first.stdout
    provision("all", "--host", container.name, "--plan", "--detailed-exitcode", check_rc=0)
    verify = provision("verify", "--host", container.name, "tensorboard")
    assert "3 passed" in verify.stdout


def test_tunnel_reaches_tensorboard(container, tmp_path):
    local = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "provision",
            "tunnel",
            "-i",
            str(container.inventory),
            "--host",
            container.name,
            "--local-port",
            str(local),
            "--log-dir",
            str(tmp_path),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        assert f"http://127.0.0.1:{local}/" in line, line
        deadline = time.monotonic() + 60
        status = None
        while status != 200 and time.monotonic() < deadline:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=5).status
            except OSError:
                time.sleep(1)
        assert status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


def test_tensorboard_is_back_after_a_reboot(container, provision):
    before, after = reboot_boot_ids(container, timeout_s=120)
    assert before != after
    assert "3 passed" in provision("verify", "--host", container.name, "tensorboard").stdout
