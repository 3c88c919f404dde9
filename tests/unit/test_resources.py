"""resources.file_content's diffs never read a secret: a file the host keeps private (0600) or
one that holds key material is reported as differing, with why it is not shown, and its old
content is never fetched (no rule answers the read: FakeRemote raises on it). The key-material
pattern is run by the real grep here, as the host runs it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fakes import FakeRemote
from provision import resources
from provision.facts import files, parse_facts
from provision.step import Context
from provision.templates import sha256

DATA = Path(__file__).parent.parent / "data" / "facts"
WG_PRIVATE = "PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
CONF = "/etc/example/app.conf"
NEW = b"[Interface]\nListenPort = 51820\n"
OLD = f"[Interface]\n{WG_PRIVATE}\n"


def ctx_for(remote: FakeRemote) -> Context:
    facts = parse_facts((DATA / "debian-12-nspawn.txt").read_text())
    return Context("box", facts, {}, lambda c, sudo: remote.probe(c, sudo=sudo))


def host_file(mode: str, content: str, key_material: bool = False) -> FakeRemote:
    """A host whose CONF has this mode and content (its hash only; the text via head -c)."""
    mark = f"{files.KEY_MARK}\n" if key_material else ""
    state = f"{mode} root root\n{sha256(content.encode())}  {CONF}\n{mark}"
    return FakeRemote().on(rf"sha256sum -- {CONF}", state)


def reads(remote: FakeRemote) -> list[str]:
    return [c for c in remote.ran if c.startswith(("head -c", "cat "))]


def test_private_file_differs_without_its_content_being_read():
    remote = host_file("600", OLD)
    (change,) = resources.file_content(ctx_for(remote), CONF, NEW, mode="0600")
    assert change.diff.startswith(f"{CONF} differs (sha256 {sha256(OLD.encode())[:12]} -> ")
    assert "not shown: the host's copy is mode 600, readable by its owner only" in change.diff
    assert "PrivateKey" not in change.diff and "yAnz5" not in change.diff
    assert reads(remote) == []


def test_readable_file_holding_key_material_is_not_read():
    remote = host_file("644", OLD, key_material=True)
    (change,) = resources.file_content(ctx_for(remote), CONF, NEW)
    assert "not shown: the host's copy holds key material" in change.diff
    assert "yAnz5" not in change.diff and reads(remote) == []
    probe = remote.ran[0]
    assert "grep -qiE" in probe and "stat -c" in probe  # asked on the host, in the same probe


def test_ordinary_file_is_diffed():
    remote = host_file("644", "[Interface]\nListenPort = 1\n")
    remote.on(rf"head -c \d+ -- {CONF}", "[Interface]\nListenPort = 1\n")
    (change,) = resources.file_content(ctx_for(remote), CONF, NEW)
    assert "-ListenPort = 1\n" in change.diff and "+ListenPort = 51820\n" in change.diff


def test_new_content_with_key_material_is_not_shown():
    remote = FakeRemote().on(rf"sha256sum -- {CONF}", (1, ""))
    (change,) = resources.file_content(ctx_for(remote), CONF, f"{WG_PRIVATE}\n".encode())
    assert "not shown: the new content holds key material" in change.diff
    assert "yAnz5" not in change.diff


def test_a_file_to_be_private_is_not_shown():
    remote = FakeRemote().on(rf"sha256sum -- {CONF}", (1, ""))
    (change,) = resources.file_content(ctx_for(remote), CONF, NEW, mode="0640")
    assert "+ListenPort = 51820\n" in change.diff  # group-readable: shown
    (change,) = resources.file_content(ctx_for(remote), CONF, NEW, mode="0600")
    assert "not shown: the file is to be mode 0600" in change.diff


def test_private_file_with_only_its_mode_wrong_says_so_without_reading():
    remote = host_file("640", NEW.decode())
    (change,) = resources.file_content(ctx_for(remote), CONF, NEW, mode="0600")
    assert change.diff == "mode/owner 640 root root -> 0600 root root\n"
    assert reads(remote) == []


# --- the state read, run by the real shell on real files --------------------------------------


def host_state(path: Path, content: bool = True) -> files.FileState:
    """What facts.files' script, run by /bin/sh here, says about `path`."""
    out = subprocess.run(
        ["sh", "-c", files.state_script(str(path), content)], capture_output=True, text=True
    )
    return files.parse_state(out.stdout, out.returncode == 0)


def test_state_read_of_a_private_file_sends_no_content(tmp_path):
    path = tmp_path / "wg0.conf"
    path.write_text(OLD)
    path.chmod(0o600)
    state = host_state(path)
    assert state.exists and state.meta[0] == "600" and state.content is None
    assert state.sha256 == sha256(OLD.encode())


def test_state_read_of_a_readable_key_sends_no_content(tmp_path):
    path = tmp_path / "leaked.conf"
    path.write_text(OLD)
    path.chmod(0o644)
    state = host_state(path)
    assert state.key_material and state.content is None


def test_state_read_of_an_ordinary_file_sends_it_only_when_asked(tmp_path):
    path = tmp_path / "app.conf"
    path.write_bytes(NEW)
    path.chmod(0o644)
    assert host_state(path).content == NEW.decode()
    assert host_state(path, content=False).content is None
    assert host_state(path, content=False).sha256 == sha256(NEW)


def test_state_read_of_a_missing_file(tmp_path):
    assert host_state(tmp_path / "nope") == files.FileState(False)


def test_state_read_stops_past_the_diff_limit(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(b"a" * (files.MAX_DIFF_BYTES + 100))
    assert len(host_state(path).content) == files.MAX_DIFF_BYTES + 1


# --- the pattern, run by the real grep -------------------------------------------------------

SECRET_SAMPLES = [
    WG_PRIVATE,
    "presharedkey=abc",
    "-----BEGIN OPENSSH PRIVATE KEY-----",
    "-----BEGIN RSA PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----",
    "-----BEGIN EC PRIVATE KEY-----",
    "password = hunter2",
    'wifi: {password: "x"}',
    "api_key: 123",
]
PLAIN_SAMPLES = [
    "PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",
    "-----BEGIN CERTIFICATE-----",
    "PasswordAuthentication no",
    "ListenPort = 51820",
]


@pytest.mark.skipif(shutil.which("grep") is None, reason="needs grep")
@pytest.mark.parametrize("line", SECRET_SAMPLES + PLAIN_SAMPLES)
def test_key_material_pattern_agrees_with_grep(tmp_path, line):
    path = tmp_path / "f"
    path.write_text(f"# a config\n{line}\n")
    grep = subprocess.run(["grep", "-qiE", "-e", files.KEY_MATERIAL, "--", str(path)])
    expected = line in SECRET_SAMPLES
    assert grep.returncode == (0 if expected else 1)
    assert bool(files.KEY_MATERIAL_RE.search(path.read_text())) is expected
