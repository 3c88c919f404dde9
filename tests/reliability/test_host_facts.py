"""What the host says about itself, checked from outside (issue 13 §8, §9, §2's pytorch item).

One disposable systemd-nspawn Debian 12 container for the module, reached over real SSH; each
fault is made from outside the tool, on the container's root filesystem, on this machine's
loopback or in the known_hosts file the inventory names:

- a third-party apt source that cannot be fetched, and one whose signing key is missing
  (a FIXTURE signed repository, tests/hosts/aptrepo.py): the error names the file and line
  and the fix;
- a changed host key (known_hosts holds another key for the host): `all` and `push` refuse
  with both fingerprints (computed here by ssh-keygen) and the whole fix, never accept-new;
- /etc/os-release rewritten to say Ubuntu 24.04 on the Debian box: refused, naming both;
- the tunnel's local port taken by another program: refused naming its pid, and the
  ssh-config entry's plain `Host` works with the port taken (forwards in `Host NAME-tunnel`);
- pytorch drift: a STAND-IN torch 2.13.0+cu130 (a tiny wheel built here: metadata, torch/
  __init__.py and torch/version.py only) replaces the real 2.13.0+cpu build: the plan shows
  it (exit 3), apply puts the cpu build back, verify is green.

The host clock cannot be moved in a container (it is this machine's kernel clock): clock skew
is covered by tests/unit/test_facts.py on recorded facts and tests/unit/test_base.py.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from common import ssh
from pkgindex import make_wheelhouse, serve

from hostrun import booted, provision_runner

pytestmark = pytest.mark.container


@pytest.fixture(scope="module")
def host(require_tier):
    """One fresh container for the module, removed afterwards."""
    yield from booted("container", require_tier)


@pytest.fixture
def provision(host, tmp_path):
    return provision_runner(host, tmp_path / "logs")


def rootfs(host) -> Path:
    return Path(host.extras["rootfs"])


def out_of(run) -> str:
    return run.stdout + run.stderr


# --- apt sources ----------------------------------------------------------------------------


def dead_port() -> int:
    """A loopback port nothing listens on (bound and closed again: connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.reliability("faults")
def test_unreachable_apt_source_is_named_with_file_line_and_fix(host, provision):
    source = rootfs(host) / "etc/apt/sources.list.d/rf-vendor.list"
    port = dead_port()
    source.write_text(f"# a vendor's repository\ndeb http://127.0.0.1:{port}/vendor stable main\n")
    try:
        run = provision("base", "--host", host.name, check_rc=1)
    finally:
        source.unlink()
    out = out_of(run)
    name = "/etc/apt/sources.list.d/rf-vendor.list"
    assert f"{name}:2 (deb http://127.0.0.1:{port}/vendor stable main)" in out, out
    assert f"sudo mv {name} {name}.disabled" in out, out


@pytest.fixture(scope="module")
def signed_repo(require_tier, tmp_path_factory):
    """FIXTURE: a signed apt repository whose key the host does not have, on 127.0.0.1."""
    import aptrepo

    reason = aptrepo.missing_tools()
    if reason:
        require_tier("container", reason)
    root = aptrepo.build(tmp_path_factory.mktemp("rf-signed-repo"))
    server, url = serve(root)
    try:
        yield url.rstrip("/")
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.reliability("faults")
def test_apt_source_without_its_key_is_named_with_signed_by_fix(host, provision, signed_repo):
    source = rootfs(host) / "etc/apt/sources.list.d/rf-unsigned.sources"
    source.write_text(f"Types: deb\nURIs: {signed_repo}/debian12/x86_64/\nSuites: /\n")
    try:
        run = provision("base", "--host", host.name, check_rc=1)
    finally:
        source.unlink()
    out = out_of(run)
    name = "/etc/apt/sources.list.d/rf-unsigned.sources"
    assert "NO_PUBKEY" in out, out  # apt's own words: the key is missing
    assert f"{name}:2 (URIs: {signed_repo}/debian12/x86_64/)" in out, out
    assert "signed-by=/etc/apt/keyrings/NAME.gpg" in out and "Signed-By:" in out, out
    assert f"sudo mv {name} {name}.disabled" in out, out


# --- a changed host key ---------------------------------------------------------------------


def fingerprint_of(known_hosts: Path, key_type: str) -> str:
    """ssh-keygen's SHA256 fingerprint of the known_hosts entry of this type."""
    listed = subprocess.run(
        ["ssh-keygen", "-lf", str(known_hosts)], capture_output=True, text=True, check=True
    ).stdout
    (line,) = [ln for ln in listed.splitlines() if ln.endswith(f"({key_type})")]
    return line.split()[1]


@pytest.fixture
def changed_key(host, tmp_path):
    """An inventory whose known_hosts holds another ed25519 key for the host (as after a
    reinstall, or an attacker in between): (inventory, known_hosts, old fp, the host's fp)."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True
    )
    other = (tmp_path / "other.pub").read_text().split()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{host.port} {other[0]} {other[1]}\n")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(host.inventory.read_text().replace(str(host.known_hosts), str(known)))
    assert str(known) in inventory.read_text()
    return (
        inventory,
        known,
        fingerprint_of(known, "ED25519"),
        fingerprint_of(host.known_hosts, "ED25519"),
    )


def assert_whole_fix(out: str, host, known: Path, old_fp: str, new_fp: str) -> None:
    assert old_fp in out and new_fp in out, out
    assert f"must print {new_fp}" in out, out  # verify out of band first
    assert f"ssh-keygen -R '[127.0.0.1]:{host.port}' -f {known}" in out, out
    assert f"ssh-keyscan -p {host.port} -t ed25519 127.0.0.1 >> {known}" in out, out
    assert "accept-new" not in out, out


@pytest.mark.reliability("lockout")
def test_changed_host_key_all_shows_both_fingerprints_and_the_whole_fix(
    host, provision, changed_key
):
    inventory, known, old_fp, new_fp = changed_key
    run = provision("all", "-i", str(inventory), "--host", host.name, check_rc=1)
    out = out_of(run)
    assert "has CHANGED" in out, out
    assert_whole_fix(out, host, known, old_fp, new_fp)
    assert known.read_text().count("\n") == 1  # nothing was added or replaced


@pytest.mark.reliability("lockout")
def test_changed_host_key_push_never_suggests_accept_new(host, provision, changed_key, tmp_path):
    inventory, known, old_fp, new_fp = changed_key
    (tmp_path / "data.txt").write_text("x\n")
    run = provision(
        "push", "-i", str(inventory), "--host", host.name, str(tmp_path / "data.txt"), "/tmp/",
        check_rc=1,
    )  # fmt: skip
    out = out_of(run)
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in out, out  # OpenSSH's own refusal
    assert_whole_fix(out, host, known, old_fp, new_fp)


# --- os-release -----------------------------------------------------------------------------

UBUNTU_2404 = """PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.1 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
UBUNTU_CODENAME=noble
"""


@pytest.mark.reliability("faults")
def test_os_release_that_contradicts_the_packages_is_refused_naming_both(host, provision):
    link = rootfs(host) / "etc/os-release"
    target = os.readlink(link)  # Debian: a link to ../usr/lib/os-release (base-files)
    base_files = ssh(host, "dpkg-query -W -f '${Version}' base-files").stdout.strip()
    link.unlink()
    link.write_text(UBUNTU_2404)
    try:
        run = provision("all", "--host", host.name, "--plan", check_rc=1)
        compat = subprocess.run(  # compat takes no --log-dir: the runner's flags do not fit
            [sys.executable, "-m", "provision", "compat", "-i", str(host.inventory),
             "--host", host.name],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )  # fmt: skip
        assert compat.returncode == 1, compat.stdout + compat.stderr
    finally:
        link.unlink()
        link.symlink_to(target)
    for out in (out_of(run), out_of(compat)):
        assert "/etc/os-release says Ubuntu 24.04.1 LTS (ID=ubuntu VERSION_ID=24.04)" in out, out
        assert f"the package system is Debian 12 (base-files {base_files})" in out, out
        assert "ubuntu-drivers" not in out and "ubuntu2404" not in out, out


# --- tunnel ---------------------------------------------------------------------------------


@pytest.mark.reliability("faults")
def test_tunnel_with_the_local_port_taken_is_refused_naming_the_owner(host, provision, tmp_path):
    other = subprocess.Popen(  # another program on the port: a web server of the user's
        ["python3", "-m", "http.server", "--bind", "127.0.0.1", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # its "Serving HTTP on ... port N" line
    )
    try:
        port = int(other.stdout.readline().split(" port ")[1].split()[0])
        run = provision(
            "tunnel", "--host", host.name, "--local-port", str(port), check_rc=2, timeout_s=60
        )
        out = out_of(run)
        owner = f"127.0.0.1:{port} is in use by pid {other.pid} ("
        assert owner in out and "-m http.server --bind 127.0.0.1 0)" in out, out
        assert "--local-port" in out and "is at http" not in out, out

        # ssh-config: the plain entry has no forwards, so plain ssh works with the port taken;
        # the -tunnel entry refuses (ExitOnForwardFailure) instead of half-working.
        cfg = tmp_path / "ssh_config"
        provision(
            "ssh-config", "--host", host.name, "--set", "tensorboard.enabled=true",
            "--set", f"tensorboard.port={port}", "--write", "--config-file", str(cfg),
        )  # fmt: skip
        plain = subprocess.run(
            ["ssh", "-F", str(cfg), "-o", "BatchMode=yes", host.name, "true"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert plain.returncode == 0 and "Address already in use" not in plain.stderr, plain
        tunnel = subprocess.run(
            ["ssh", "-F", str(cfg), "-o", "BatchMode=yes", f"{host.name}-tunnel", "true"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert tunnel.returncode != 0 and "Address already in use" in tunnel.stderr, tunnel
    finally:
        other.terminate()
        other.wait(timeout=10)


# --- pytorch: another build of the same release ---------------------------------------------


def stand_in_torch_wheel(dest: Path, local: str) -> Path:
    """STAND-IN: a tiny wheel named torch 2.13.0+LOCAL (metadata, torch/__init__.py and
    torch/version.py as torch's own build writes them). It imports; it computes nothing."""
    version = f"2.13.0+{local}"
    cuda = f"'{local[2:-1]}.{local[-1]}'" if local.startswith("cu") else "None"
    files = {
        "torch/__init__.py": f"from torch import version\n__version__ = {version!r}\n",
        "torch/version.py": f"__version__ = {version!r}\ncuda = {cuda}\n",
        f"torch-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n"
            "Summary: STAND-IN for a test, not PyTorch\n"
        ),
        f"torch-{version}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: rf-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"torch-{version}.dist-info/RECORD,,")
    files[f"torch-{version}.dist-info/RECORD"] = "\n".join(record) + "\n"
    wheel = dest / f"torch-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return wheel


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    """The real torch-2.13.0+cpu wheel (/opt/wheels) as a find-links page on 127.0.0.1."""
    server, url = serve(make_wheelhouse(tmp_path_factory.mktemp("rf-wheels")))
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.reliability("faults")
def test_pytorch_other_build_is_drift_and_repaired(host, provision, wheels, tmp_path):
    sets = []
    for k, v in {
        "pytorch.enabled": "true",
        "pytorch.index": "cpu",
        "pytorch.version": "2.13.0",
        "pytorch.packages": "torch",
        "pytorch.find_links": wheels,
        "pytorch.index_url": "https://pypi.org/simple",
    }.items():
        sets += ["--set", f"{k}={v}"]
    provision("base", "--host", host.name)  # the CA bundle pip needs for PyPI here
    provision("pytorch", "--host", host.name, *sets)
    python = "/opt/provision/envs/dl/bin/python"
    version = f"{python} -c 'import importlib.metadata as m; print(m.version(\"torch\"))'"
    assert ssh(host, version).stdout.strip() == "2.13.0+cpu"

    # From outside: another build of the same release lands in the env (as when pip took
    # it from another index).
    wheel = stand_in_torch_wheel(tmp_path, "cu130")
    inside = rootfs(host) / "var/tmp" / wheel.name  # /tmp is a tmpfs inside
    inside.write_bytes(wheel.read_bytes())
    ssh(host, f"{python} -m pip install -q --no-deps --no-index /var/tmp/{wheel.name}")
    assert ssh(host, version).stdout.strip() == "2.13.0+cu130"
    verify = provision("verify", "--host", host.name, "pytorch", *sets, check_rc=1)
    assert "torch.version.cuda is 13.0" in out_of(verify), out_of(verify)

    plan = provision(
        "pytorch", "--host", host.name, *sets, "--plan", "--detailed-exitcode", check_rc=3
    )
    assert "torch 2.13.0+cu130 is the cu130 build, the cpu index is chosen" in out_of(plan), out_of(
        plan
    )
    provision("pytorch", "--host", host.name, *sets)
    assert ssh(host, version).stdout.strip() == "2.13.0+cpu"
    provision("verify", "--host", host.name, "pytorch", *sets)
    provision("pytorch", "--host", host.name, *sets, "--plan", "--detailed-exitcode")
