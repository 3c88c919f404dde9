"""The host's text is data: terminal escapes planted on a real host (a managed file's old
content, a listener's process name, os-release's PRETTY_NAME, a GPU's name) reach neither the
terminal nor the transcripts raw. Each case runs the real CLI (subprocess) against one
disposable container for the module and searches stdout, stderr and every transcript for raw
ESC, BEL, CSI, CR and bidi overrides; each also asserts that the escaped text IS shown, so a
case where the host text never made it to the output cannot pass.

The hostile sequences come from xterm's control sequences (ECMA-48 + OSC): OSC 0 sets the
window title (ends in BEL), CSI 2 J clears the screen, U+202E (RLO) reverses what follows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from common import free_port, ssh

from hostrun import booted, provision_runner

pytestmark = [pytest.mark.container, pytest.mark.reliability("host_text")]

ROOT = Path(__file__).resolve().parents[2]
# As printf(1) octal escapes (for the host's shell) and as the text the user must see.
TITLE_SH = r"\033]0;pwned\007"
CLEAR_SH = r"\033[2J"
RLO_SH = r"\342\200\256"  # U+202E in UTF-8
TITLE_SHOWN = "\\x1b]0;pwned\\x07"
CLEAR_SHOWN = "\\x1b[2J"
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\r")


@pytest.fixture(scope="module")
def host(require_tier):
    """One fresh container for the module, removed afterwards."""
    yield from booted("container", require_tier)


@pytest.fixture
def cli(host, tmp_path):
    """The CLI against the host, with this case's own transcript folder."""
    logs = tmp_path / "logs"
    run = provision_runner(host, logs)

    def go(*args: str, check_rc: int | None = 0, transcript: bool = True):
        proc = run(*args, env={"PYTHONPATH": str(ROOT)}, check_rc=check_rc)
        texts = {
            "stdout": proc.stdout,
            "stderr": proc.stderr,
            **{p.name: p.read_text() for p in sorted(logs.glob("*.log"))},
        }
        if transcript:  # `facts` writes none
            assert len(texts) > 2, "no transcript was written: the search would prove nothing"
        return proc, texts

    return go


def raw_in(texts: dict[str, str]) -> list[str]:
    """Where a raw control character landed: ['stdout: \\x1b', ...]."""
    return [f"{where}: {c!r}" for where, text in texts.items() for c in RAW if c in text]


def test_diff_and_vv_output_of_a_hostile_file_are_escaped(host, cli):
    """A managed file's old content with escapes: --plan --diff -vv shows it escaped."""
    path = "/etc/systemd/timesyncd.conf.d/provision.conf"
    ssh(
        host,
        f"mkdir -p /etc/systemd/timesyncd.conf.d && "
        f"printf '[Time]\\nNTP={TITLE_SH}{CLEAR_SH}{RLO_SH}evil\\r\\n' > {path} && chmod 644 {path}",
    )
    try:
        proc, texts = cli("base", "--host", host.name, "--plan", "--diff", "-vv")
    finally:
        ssh(host, f"rm -f {path}")
    assert f"-NTP={TITLE_SHOWN}{CLEAR_SHOWN}\\u202eevil\\r" in proc.stdout, proc.stdout
    assert TITLE_SHOWN in proc.stderr  # -vv showed the probe's output, escaped
    assert not raw_in(texts), raw_in(texts)


def test_verify_escapes_a_hostile_listener_process_name(host, cli):
    """An unprivileged user's listener named with escapes: plain `verify` names it escaped."""
    port = free_port()
    server = (
        "import ctypes, os, socket, time\n"
        "open('/tmp/listener.pid', 'w').write(str(os.getpid()))\n"
        "ctypes.CDLL(None).prctl(15, b'\\x1b]0;pw\\x07\\x1b[2J', 0, 0, 0)  # PR_SET_NAME\n"
        "s = socket.socket()\n"
        f"s.bind(('0.0.0.0', {port})); s.listen(1); time.sleep(300)\n"
    )
    ssh(host, f"cat > /tmp/listener.py <<'EOF'\n{server}EOF")
    ssh(
        host,
        "nohup setsid runuser -u nobody -- python3 /tmp/listener.py </dev/null >/dev/null 2>&1 &"
        " sleep 1",
    )
    try:
        proc, texts = cli("verify", "--host", host.name, "ssh", check_rc=None)
    finally:
        ssh(host, "kill $(cat /tmp/listener.pid); rm -f /tmp/listener.pid /tmp/listener.py")
    line = next((x for x in proc.stdout.splitlines() if f":{port}" in x), "")
    assert "\\x1b]0;pw\\x07\\x1b[2J" in line and " failed " in line, proc.stdout
    assert not raw_in(texts), raw_in(texts)


def test_status_escapes_a_hostile_gpu_name(host):
    """nvidia-smi (a stand-in on the host) reports a GPU name with escapes: status escapes it.
    `status` writes no transcript: its stdout and stderr are searched."""
    smi = (
        "#!/bin/sh\n"
        'case "$*" in *query-gpu*) '
        f"printf '0, NVIDIA {TITLE_SH}RTX{CLEAR_SH}, 5, 100, 24564, 40, 50.0, 450.0, GPU-1\\n';; "
        "esac\n"
    )
    ssh(
        host,
        f"cat > /usr/local/bin/nvidia-smi <<'EOF'\n{smi}EOF\nchmod 755 /usr/local/bin/nvidia-smi",
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "provision", "status", "-i", str(host.inventory),
             "--host", host.name],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    finally:
        ssh(host, "rm -f /usr/local/bin/nvidia-smi")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"NVIDIA {TITLE_SHOWN}RTX{CLEAR_SHOWN}" in proc.stdout, proc.stdout
    assert not raw_in({"stdout": proc.stdout, "stderr": proc.stderr})


def test_os_release_pretty_name_is_escaped_in_facts_and_in_the_refusal(host, cli):
    """PRETTY_NAME with escapes: `facts` shows it escaped; so does the error that refuses an
    unsupported release. Runs last: it replaces /etc/os-release and puts the link back."""
    ssh(
        host,
        "grep -v '^PRETTY_NAME=' /usr/lib/os-release > /etc/os-release.new && "
        f"printf 'PRETTY_NAME=\"Debian {TITLE_SH}{CLEAR_SH}Evil\"\\n' >> /etc/os-release.new && "
        "mv -f /etc/os-release.new /etc/os-release",
    )
    try:
        assert "\x1b" in ssh(host, "cat /etc/os-release").stdout  # the plant really holds ESC
        proc, texts = cli("facts", "--host", host.name, transcript=False)
        assert f"Debian {TITLE_SHOWN}{CLEAR_SHOWN}Evil" in proc.stdout, proc.stdout
        assert not raw_in(texts), raw_in(texts)
        ssh(host, "sed -i 's/^VERSION_ID=.*/VERSION_ID=\"11\"/' /etc/os-release")
        proc, texts = cli("base", "--host", host.name, "--plan", check_rc=1)
        assert f"Debian {TITLE_SHOWN}{CLEAR_SHOWN}Evil" in proc.stderr, proc.stderr
        assert not raw_in(texts), raw_in(texts)
    finally:
        ssh(host, "ln -sfn ../usr/lib/os-release /etc/os-release")
