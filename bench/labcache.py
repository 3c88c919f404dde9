"""Bench section "lab cache": 4 fresh container hosts provisioned at once through one
apt-cacher-ng (from Debian, on THIS machine, bound to 127.0.0.1 only), and from
apt-cacher-ng's own log the .debs fetched from their source vs served from the cache.

    sudo /work/venv/bin/python bench/labcache.py      # prints the section

The hosts (h4-lab0..3) are booted without the harness's .deb seed (`seed_apt=False`), so each
one's apt really downloads every package, with base.apt_proxy=http://127.0.0.1:3142 (a
container shares this machine's network namespace: its 127.0.0.1 is ours). `provision base`
runs on the four at once (the GPU stack and TensorBoard are off: base's packages are the
apt part of every box). apt-cacher-ng's configuration is provision's own template
(templates/base/acng-provision.conf.j2, what base.apt_cache_server writes), put in place
before the package is installed so that it never listens beyond 127.0.0.1, plus one
bench-only line: its Debian backend set to deb.debian.org, the one mirror this machine
reaches (its default, ftp.debian.org, does not resolve here). A cache already holding
packages from an earlier run serves them without fetching: the section says how many were in
it before. apt-cacher-ng is stopped afterwards if this run started it; every host is
taken down.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOSTS_DIR = REPO / "tests" / "hosts"
CONF = Path("/etc/apt-cacher-ng/zzz-provision.conf")  # what base.apt_cache_server writes
# This machine reaches deb.debian.org only; apt-cacher-ng's default Debian backend is
# ftp.debian.org (does not resolve here): the bench points it at deb.debian.org.
BENCH_CONF = Path("/etc/apt-cacher-ng/zzz-zbench.conf")
REMAP = "Remap-debrep: file:deb_mirror*.gz /debian ; http://deb.debian.org/debian/\n"
LOG = Path("/var/log/apt-cacher-ng/apt-cacher.log")
PIDFILE = Path("/run/apt-cacher-ng/pid")
INIT = "/etc/init.d/apt-cacher-ng"
CACHE_DIR = Path("/var/cache/apt-cacher-ng")
PROXY = "http://127.0.0.1:3142"
NAMES = [f"h4-lab{i}" for i in range(4)]


def log(message: str) -> None:
    print(f"[labcache] {message}", file=sys.stderr, flush=True)


def running() -> bool:
    """Whether apt-cacher-ng answers on 127.0.0.1:3142."""
    import socket

    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", 3142)) == 0


def ensure_cache() -> bool:
    """apt-cacher-ng installed, configured for 127.0.0.1 and running; True if we started it."""
    sys.path.insert(0, str(REPO))
    from provision.templates import render

    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_bytes(render("base/acng-provision.conf.j2", port=3142, bind=["127.0.0.1"]))
    BENCH_CONF.write_text(REMAP)
    was_running = running()
    if not shutil.which("apt-cacher-ng") and not Path("/usr/sbin/apt-cacher-ng").exists():
        log("apt-get install apt-cacher-ng (from Debian)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "apt-cacher-ng"],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
    if not running():
        subprocess.run([INIT, "restart"], check=True, stdout=subprocess.DEVNULL)
    elif not was_running:
        subprocess.run(
            [INIT, "restart"], check=True, stdout=subprocess.DEVNULL
        )  # the package's own start: our conf too
    for _ in range(50):
        if running():
            break
        time.sleep(0.2)
    if not running():
        raise SystemExit("apt-cacher-ng does not answer on 127.0.0.1:3142")
    return not was_running


def listening() -> str:
    """Where apt-cacher-ng listens (ss), to show it is 127.0.0.1 only."""
    out = subprocess.run(["ss", "-ltnH", "sport", "= :3142"], capture_output=True, text=True)
    return " ".join(sorted({line.split()[3] for line in out.stdout.splitlines() if line.split()}))


def debs_in_cache() -> int:
    return sum(1 for _ in CACHE_DIR.rglob("*.deb")) if CACHE_DIR.exists() else 0


def count_log(offset: int) -> tuple[collections.Counter, collections.Counter]:
    """Per .deb: how often apt-cacher-ng fetched it from its source (`I` lines: data in) and
    served it to a client (`O` lines: data out), from the log lines after `offset`."""
    fetched: collections.Counter = collections.Counter()
    served: collections.Counter = collections.Counter()
    with LOG.open("rb") as f:
        f.seek(offset)
        for raw in f.read().decode(errors="replace").splitlines():
            parts = raw.split("|")
            if len(parts) < 5 or not parts[-1].endswith(".deb"):
                continue
            name = parts[-1].rsplit("/", 1)[-1]
            if parts[1] == "I":
                fetched[name] += 1
            elif parts[1] == "O":
                served[name] += 1
    return fetched, served


def provision_base(host) -> tuple[int, float, str]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "provision", "base", "-i", str(host.inventory), "--host", host.name],
        capture_output=True,
        text=True,
        cwd=str(host.inventory.parent),
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=3600,
    )
    return proc.returncode, time.monotonic() - start, proc.stdout[-2000:] + proc.stderr[-2000:]


def empty_cache() -> None:
    """A cold cache: apt-cacher-ng stopped and its cache folder emptied (the bench's own
    install on this machine); ensure_cache starts it again."""
    if Path(INIT).exists():
        subprocess.run([INIT, "stop"], check=False, stdout=subprocess.DEVNULL)
    if CACHE_DIR.is_dir():
        for entry in CACHE_DIR.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)


def run(cold: bool = True) -> str:
    """Measure once (from a cold cache unless cold=False); the markdown section `## lab cache`."""
    sys.path.insert(0, str(HOSTS_DIR))
    import container

    if cold:
        empty_cache()
    started = ensure_cache()
    where = listening()
    before = debs_in_cache()
    offset = LOG.stat().st_size if LOG.exists() else 0
    hosts = []
    try:
        extra = {"base.apt_proxy": PROXY, "tensorboard.enabled": "false"}
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            hosts = list(pool.map(lambda n: container.up(n, extra, seed_apt=False), NAMES))
        log(f"{len(hosts)} hosts up; provision base on all at once")
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(provision_base, hosts))
        wall = time.monotonic() - t0
        for host, (rc, _s, tail) in zip(hosts, results, strict=True):
            if rc != 0:
                log(f"{host.name}: provision base exited {rc}:\n{tail}")
        time.sleep(1)  # apt-cacher-ng writes its log lines as transfers end
        fetched, served = count_log(offset)
    finally:
        for name in NAMES:
            try:
                container.down(name)
            except Exception as exc:  # keep taking the others down
                log(f"down {name}: {exc}")
        if started:
            subprocess.run([INIT, "stop"], check=False, stdout=subprocess.DEVNULL)
            log("apt-cacher-ng stopped (this run started it)")
            CONF.unlink(missing_ok=True)
        BENCH_CONF.unlink(missing_ok=True)
    names = set(fetched) | set(served)
    twice = sorted(n for n, c in fetched.items() if c > 1)
    requests = sum(served.values())
    rows = [
        "## lab cache",
        "",
        f"4 container hosts (booted without the .deb seed), `provision base` on all four at once "
        f"through apt-cacher-ng {PROXY} (Debian's package on this machine, listening on "
        f"{where or '?'}); counts from its own log ({LOG}).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| hosts ok | {sum(1 for rc, _s, _t in results if rc == 0)}/4 |",
        f"| wall time of the 4 runs at once | {wall:.1f} s |",
        f"| each run | {', '.join(f'{s:.1f} s' for _rc, s, _t in results)} |",
        f"| distinct .debs | {len(names)} |",
        f"| .debs served to the hosts | {requests} |",
        f"| .debs fetched from their source | {sum(fetched.values())} |",
        f"| .debs fetched more than once | {len(twice)} {', '.join(twice[:5])} |",
        f"| .debs in the cache before the run | {before} |",
        "",
        "Target: each package fetched from its source once: "
        + ("**met**" if names and not twice and requests >= len(names) else "**missed**")
        + f" ({sum(fetched.values())} fetches for {len(names)} packages, {requests} served).",
    ]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(run())
