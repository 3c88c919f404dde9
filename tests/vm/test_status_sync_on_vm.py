"""`provision status` and `provision push`/`pull` over real SSH on the disposable VM: status
says "no NVIDIA GPU" there, a push before rsync is on the host says how to fix it, and a
tree with spaces, quotes, `$()`, a leading dash, non-ASCII names, an empty directory, a
symlink and a 5 MB random file makes the round trip byte-identical; `--delete` only when
asked."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from common import ssh

pytestmark = pytest.mark.vm

NAMES = ["sp ace.txt", "it's.txt", 'say "hi".txt', "$(touch pwned)", "-rf", "naïve 日本.txt"]
REMOTE = "/home/tester/sync test/ünï"


def make_tree(root: Path) -> None:
    (root / "empty dir").mkdir(parents=True)
    (root / "sub dir" / "deeper").mkdir(parents=True)
    for name in NAMES:
        (root / name).write_bytes(os.urandom(1000) + name.encode())
        (root / "sub dir" / "deeper" / name).write_bytes(name.encode() * 3)
    (root / "big.bin").write_bytes(os.urandom(5 * 1024 * 1024))
    (root / "link to it's").symlink_to("it's.txt")


def tree_digest(root: Path) -> dict[str, str]:
    """Every name under root with its sha256 (or 'dir', or the link target)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def vm(shared_vm):
    """The VM tier's shared VM (tests/vm/conftest.py), converged by base (rsync is one of its essentials)."""
    return shared_vm


def test_status_json_says_no_nvidia_gpu(vm, provision):
    result = provision("status", "--host", vm.name, "--json")
    data = json.loads(result.stdout)[vm.name]
    assert data["reachable"] and data["error"] == ""
    assert data["gpu_reason"] == "no NVIDIA GPU" and data["gpus"] == []
    assert data["load"] and len(data["load"]) == 3 and data["uptime_s"] > 0
    assert "/" in [d["mount"] for d in data["disks"]]
    table = provision("status", "--host", vm.name)
    assert f"{vm.name}  -  no NVIDIA GPU" in table.stdout, table.stdout


def test_push_before_rsync_is_on_the_host_says_how(vm, provision, tmp_path):
    # base installed rsync on the shared VM: take it away (the next test puts it back).
    ssh(vm, "DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq rsync", timeout=600)
    (tmp_path / "f").write_text("x")
    result = provision("push", "--host", vm.name, str(tmp_path / "f"), "/tmp/x", check_rc=1)
    assert f"rsync is not installed on {vm.name}" in result.stderr, result.stderr
    assert f"provision base --host {vm.name}" in result.stderr


def test_round_trip_is_byte_identical_with_hostile_names(vm, provision, tmp_path):
    # rsync is one of the base step's essentials, removed by the test above: apt directly
    # (from apt's own cache of base's download when it is still there).
    ssh(
        vm,
        "command -v rsync || (apt-get update -qq && "
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync)",
        timeout=1200,
    )
    src = tmp_path / "src"
    make_tree(src)
    work = tmp_path / "work"
    work.mkdir()
    pushed = provision("push", "--host", vm.name, str(src) + "/", REMOTE)
    assert "Number of regular files transferred" in pushed.stdout  # --info=stats2: not a tty
    print("push output:\n" + pushed.stderr + pushed.stdout)
    listing = ssh(vm, "find '/home/tester/sync test' | sort", user="tester").stdout
    assert "naïve 日本.txt" in listing and "/-rf" in listing and "empty dir" in listing
    assert ssh(vm, "ls /home/tester /tmp", user="tester").stdout.count("pwned") == 0

    back = tmp_path / "back"
    provision("pull", "--host", vm.name, REMOTE + "/", str(back))
    assert tree_digest(back) == tree_digest(src)
    assert len(tree_digest(src)) == 2 * len(NAMES) + 5  # + 3 dirs, big.bin, the link
    assert not list(tmp_path.rglob("pwned"))

    again = provision("push", "--host", vm.name, str(src) + "/", REMOTE)
    assert "Number of regular files transferred: 0" in again.stdout, again.stdout


def test_delete_only_when_asked(vm, provision, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "keep").write_text("k")
    remote = "/home/tester/delete test"
    provision("push", "--host", vm.name, str(src) + "/", remote)
    ssh(vm, "touch '/home/tester/delete test/extra'", user="tester")
    provision("push", "--host", vm.name, str(src) + "/", remote)
    exists = "test -e '/home/tester/delete test/extra'"
    assert ssh(vm, exists, user="tester", check=False).returncode == 0
    dry = provision("push", "--host", vm.name, "--delete", "--dry-run", str(src) + "/", remote)
    assert "*deleting   extra" in dry.stdout, dry.stdout
    assert ssh(vm, exists, user="tester", check=False).returncode == 0
    provision("push", "--host", vm.name, "--delete", str(src) + "/", remote)
    assert ssh(vm, exists, user="tester", check=False).returncode == 1


def test_bad_input_is_refused_before_connecting(vm, provision, tmp_path):
    relative = provision("pull", "--host", vm.name, "data/x", str(tmp_path), check_rc=2)
    assert "is not absolute" in relative.stderr
    missing = provision("push", "--host", vm.name, str(tmp_path / "nope"), "/tmp", check_rc=2)
    assert "does not exist" in missing.stderr
