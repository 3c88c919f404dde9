"""The lab's cache (base.apt_proxy, base.pip_index_url) on a container host that downloads
every .deb itself (no seeded apt cache): apt goes through the proxy (the proxy's own count and
`apt-config dump` say so), pip reads the lab's index, a broken drop-in is planned and
repaired, an unreachable proxy is named, and unsetting the setting takes the drop-in away.

The proxy is a STAND-IN (tests/hosts/aptproxy.py: it forwards and counts, it caches nothing);
the real apt-cacher-ng serving 4 hosts is measured in bench/labcache.py. One container for the
module, one fresh `provision base` (about a minute); the other runs are small.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import unquote

import pytest
from aptproxy import start
from common import ssh

from hostrun import booted, provision_runner

pytestmark = pytest.mark.container
DROP_IN = "/etc/apt/apt.conf.d/99provision-proxy"
DOC = "apt (and pip) fetch through the lab's cache"


@pytest.fixture(scope="module")
def proxy():
    server, url, seen = start()
    try:
        yield url, seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def host(require_tier, proxy):
    """The container, `provision base` applied once through the stand-in proxy."""
    url, _seen = proxy
    extra = {"base.apt_proxy": url, "base.pip_index_url": f"{url}/simple/"}
    for box in booted("container", require_tier, extra_vars=extra, seed_apt=False):
        run = provision_runner(box, box.inventory.parent / "labcache-logs")
        run("base", "--host", box.name)
        yield box


@pytest.fixture
def provision(host, tmp_path):
    return provision_runner(host, tmp_path / "logs")


def verify_lines(stdout: str, status: str) -> list[str]:
    return [x for x in stdout.splitlines() if f" {status} " in x and DOC in x]


def test_apt_fetched_every_deb_through_the_proxy_and_second_run_changes_nothing(
    host, proxy, provision
):
    url, seen = proxy
    dump = ssh(host, "apt-config dump Acquire::http::Proxy Acquire::https::Proxy").stdout
    assert f'Acquire::http::Proxy "{url}";' in dump.splitlines()
    assert 'Acquire::https::Proxy "DIRECT";' in dump.splitlines()
    asked = {unquote(PurePosixPath(u).name) for _m, u in seen if u.startswith("http://")}
    # the lists came through it: apt-get update's index requests
    assert any(n in asked for n in ("InRelease", "Release")), sorted(asked)[:20]
    # and every .deb apt downloaded on the host (not seeded: it fetched each itself)
    debs = ssh(host, "cd /var/cache/apt/archives && ls -1 *.deb").stdout.split()
    assert debs and any(d.startswith("build-essential_") for d in debs), debs
    # apt names a .deb in archives/ NAME_EPOCH%3aVERSION_ARCH.deb; the pool's name has no epoch
    fetched = {n for n in asked if n.endswith(".deb")}
    missing = [d for d in debs if re.sub(r"_[0-9]+:", "_", unquote(d)) not in fetched]
    assert not missing, f"downloaded on the host but not through the proxy: {missing}"
    provision("base", "--host", host.name, "--plan", "--detailed-exitcode")


def test_pip_on_the_box_asks_the_lab_index(host, proxy):
    url, seen = proxy
    ssh(host, "python3 -m venv /root/v", user="root")
    config = ssh(host, "/root/v/bin/pip config list", user="root").stdout
    assert f"global.index-url='{url}/simple/'" in config.splitlines()
    before = len(seen)
    ssh(
        host,
        "/root/v/bin/pip download -q --no-deps -d /root/d tensorboard",
        user="root",
        check=False,
    )
    assert ("GET", "/simple/tensorboard/") in seen[before:]


def test_a_broken_drop_in_is_planned_and_repaired(host, provision):
    ssh(host, f"sed -i 's#127.0.0.1:[0-9]*#127.0.0.1:9#' {DROP_IN}", user="root")
    broken = provision("verify", "--host", host.name, "base", check_rc=1)
    assert verify_lines(broken.stdout, "failed"), broken.stdout
    plan = provision("all", "--host", host.name, "--plan", "--detailed-exitcode", check_rc=3)
    planned = [x.split()[1] for x in plan.stdout.splitlines() if " planned " in x]
    assert "base" in planned, plan.stdout
    provision("base", "--host", host.name)
    fixed = provision("verify", "--host", host.name, "base")
    assert verify_lines(fixed.stdout, "passed"), fixed.stdout


def test_an_unreachable_proxy_is_named_and_unsetting_it_removes_the_drop_in(host, provision):
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens on it here
    failed = provision(
        "base", "--host", host.name, "--set", f"base.apt_proxy={dead}",
        "--set", "base.extra_packages=tree", check_rc=None,
    )  # fmt: skip
    assert failed.returncode != 0
    assert f"base.apt_proxy {dead} does not answer" in failed.stdout + failed.stderr
    gone = provision("base", "--host", host.name, "--set", "base.apt_proxy=")
    assert f"move {DROP_IN}" in gone.stdout, gone.stdout
    dump = ssh(host, "apt-config dump Acquire::http::Proxy").stdout
    assert "Acquire::http::Proxy" not in dump, dump
    provision("base", "--host", host.name)  # back through the proxy for the next test
