"""Fresh runs: a GPU-stack `provision all` from nothing, with the background fetcher
(provision.prefetch) against `--no-prefetch`, on two fresh container hosts without the apt seed
(every .deb really downloaded), every source throttled to the same rate.

The settings are tests/container/test_gpu_stack_on_container.py's `stack` fixture: driver from
Debian's non-free (require_gpu=false), cuda 12.8 from the FIXTURE signed apt repository, conda
from the FIXTURE installer, pytorch from the real torch CPU wheel as find-links (its
dependencies from PyPI). The fixture servers sit behind tests/hosts/delay.py's Line capped at
RATE (this kernel has no `tc netem`: the cap is made in user space), and so do the Debian
packages: the hosts' apt goes through tests/hosts/aptproxy.py (a forwarding proxy that caches
nothing) behind its own Line, set as `base.apt_proxy`. PyPI (torch's dependencies) is not
throttled: pip reaches it directly. With prefetch the fetcher also fetches the pip wheels
(torch from the throttled find-links page, its and TensorBoard's dependencies from PyPI) while
dpkg works; `pip s` is then the installs from its folder. The sequential run goes first.

    sudo python3 bench/fresh.py [--runs N]     # prints the markdown section
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOSTS = REPO / "tests" / "hosts"
RATE = 20e6  # bytes/s, each direction of each line


def throttled(url: str, lines: list) -> str:
    """The URL through a new Line capped at RATE."""
    from delay import Line

    m = re.match(r"http://127\.0\.0\.1:(\d+)(.*)", url)
    line = Line(("127.0.0.1", int(m.group(1))), one_way_s=0, rate_bytes_s=RATE).start()
    lines.append(line)
    return f"http://127.0.0.1:{line.port}{m.group(2)}"


def sources(root: Path, closers: contextlib.ExitStack) -> dict[str, str]:
    """The GPU stack's stand-ins (tests/hosts/gpustack.py) on 127.0.0.1, each behind a
    throttled Line, and the throttled apt proxy."""
    import aptproxy
    import gpustack

    lines: list = []
    closers.callback(lambda: [line.close() for line in lines])
    urls = closers.enter_context(gpustack.served(root, lambda url: throttled(url, lines)))
    proxy, proxy_url, _seen = aptproxy.start()
    closers.callback(proxy.server_close)
    closers.callback(proxy.shutdown)
    urls["apt_proxy"] = throttled(proxy_url, lines)
    return urls


def one_run(name: str, extra: dict[str, str], logs: Path, prefetch: bool) -> dict:
    """Boot a fresh no-apt-seed host, run `provision all` once: wall time and what it logged."""
    import container

    host = container.up(name, extra, seed_apt=False)
    try:
        argv = [sys.executable, "-m", "provision", "all", "-i", str(host.inventory)]
        argv += ["--host", name, "--log-dir", str(logs)]
        argv += [] if prefetch else ["--no-prefetch"]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        started, load = time.monotonic(), os.getloadavg()[0]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=3600)
        wall = time.monotonic() - started
        load = f"{load:.1f} -> {os.getloadavg()[0]:.1f}"  # other work on the machine skews it
        log = max(logs.glob(f"{name}-*.log"), key=lambda p: p.stat().st_mtime_ns).read_text()
        return {"wall": wall, "rc": proc.returncode, "log": log, "out": proc.stdout, "load": load}
    finally:
        container.down(name)


def apt_fetched(log: str) -> tuple[float, float]:
    """(MB, seconds) of every `Fetched X MB in Ns` apt wrote (the steps' and the fetcher's)."""
    units = {"B": 1e-6, "kB": 1e-3, "MB": 1.0, "GB": 1e3}
    mb = secs = 0.0
    for m in re.finditer(r"Fetched ([\d.]+) (B|kB|MB|GB) in (?:(\d+)min )?(\d+)s", log):
        mb += float(m.group(1)) * units[m.group(2)]
        secs += int(m.group(3) or 0) * 60 + int(m.group(4))
    return mb, secs


def command_seconds(log: str, needle: str) -> float:
    """Seconds the transcript's commands containing `needle` took (`# exit N in Xs`)."""
    total = 0.0
    # A command may span lines, and the fetcher's lines may come before its exit line.
    for m in re.finditer(
        r"^\$ ([^\n]*)(?:\n(?!\$ )[^\n]*)*?\n# exit -?\d+ in ([\d.]+)s", log, re.M
    ):
        total += float(m.group(2)) if needle in m.group(1) else 0.0
    return total


def run(runs: int = 1) -> str:
    """The `## fresh runs` section: prefetch vs --no-prefetch, wall time and downloads."""
    import tempfile

    sys.path[:0] = [str(HOSTS), str(REPO / "tests"), str(REPO)]
    import gpustack

    rows = []
    notes = []
    with (
        tempfile.TemporaryDirectory(prefix="fresh-bench-") as tmp,
        contextlib.ExitStack() as closers,  # closed before the folder goes
    ):
        urls = sources(Path(tmp), closers)
        extra = {**gpustack.settings(urls), "base.apt_proxy": urls["apt_proxy"]}
        for n in range(runs):
            results = {}
            for label, on in (("sequential (--no-prefetch)", False), ("prefetch", True)):
                logs = Path(tmp) / f"logs-{n}-{int(on)}"
                results[label] = one_run(f"fresh{n}{int(on)}{os.getpid() % 1000}", extra,
                                         logs, on)  # fmt: skip
            rows.append(results)
    out = ["## fresh runs", ""]
    out.append(
        f"GPU-stack `provision all` on a fresh no-apt-seed container, every source capped at "
        f"{RATE / 1e6:.0f} MB/s (user-space Line: no netem here; PyPI not throttled). "
        f"{runs} pair(s), sequential first."
    )
    out += ["", "| run | wall s | rc | load 1m | apt MB | apt fetch s | curl s | pip s | fetcher |"]
    out.append("|---|---|---|---|---|---|---|---|---|")
    walls: dict[str, list[float]] = {}
    for results in rows:
        for label, r in results.items():
            mb, secs = apt_fetched(r["log"])
            fetcher = re.search(r"prefetch +done +(.*)", r["out"])
            curl = command_seconds(r["log"], "curl -fsSL")  # conda's installer, cuda-keyring
            # pip installs (pytorch's and TensorBoard's): download and install, or install only
            # from the fetcher's wheels
            pip = command_seconds(r["log"], "-m pip install")
            pip += command_seconds(r["log"], "bin/pip install")
            out.append(
                f"| {label} | {r['wall']:.1f} | {r['rc']} | {r['load']} | {mb:.0f} | {secs:.0f} | "
                f"{curl:.1f} | {pip:.0f} | {fetcher.group(1) if fetcher else '-'} |"
            )
            walls.setdefault(label, []).append(r["wall"])
            if r["rc"]:
                notes.append(f"{label} failed: {r['out'][-400:]}")
    seq = min(walls.get("sequential (--no-prefetch)", [0])) or 1
    pre = min(walls.get("prefetch", [0]))
    saved = 100 * (1 - pre / seq)
    target = "met" if saved >= 25 else "MISSED"
    out += ["", f"Prefetch saves {saved:.0f} % of the wall time (target >= 25 %: {target})."]
    out += [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    print(run(parser.parse_args().runs))
