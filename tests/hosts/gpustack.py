"""The GPU stack's stand-ins, served on 127.0.0.1, and the settings that turn every step on.

One copy for tests/container/test_gpu_stack_on_container.py, bench/run.py and bench/fresh.py:
the FIXTURE signed CUDA apt repository (aptrepo.py, not NVIDIA's), the FIXTURE conda
installer (condafixture.py, not Miniforge) and the REAL torch CPU wheel of /opt/wheels
(pkgindex.py), with driver from Debian's non-free packages (`driver.require_gpu=false`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import aptrepo
from condafixture import build as build_installer
from pkgindex import make_wheelhouse, serve

TORCH = {
    "pytorch.enabled": "true",
    "pytorch.index": "cpu",
    "pytorch.version": "2.13.0",
    "pytorch.packages": "torch",
    "pytorch.index_url": "https://pypi.org/simple",
}


@contextlib.contextmanager
def served(root: Path, through: Callable[[str], str] = lambda url: url):
    """Build the stand-ins under `root` and serve them for the block; yields their URLs
    (repo, installer, sha256, wheels), each server URL passed through `through` first (the
    fresh-run bench puts a throttled line in front of each)."""
    installer, sha = build_installer(root / "installer")
    servers, urls = [], {}
    try:
        for key, folder in (
            ("repo", aptrepo.build(root / "cuda-repo")),
            ("installer", installer.parent),
            ("wheels", make_wheelhouse(root / "wheels")),
        ):
            server, url = serve(folder)
            servers.append(server)
            urls[key] = through(url)
        urls["installer"] += installer.name
        urls["sha256"] = sha
        urls["repo_key"] = aptrepo.key_fingerprint(root / "cuda-repo")  # not NVIDIA's key
        yield urls
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def settings(urls: dict[str, str]) -> dict[str, str]:
    """Every step on, on the stand-ins at `urls` (from `served`)."""
    return {
        "driver.enabled": "true",
        "driver.require_gpu": "false",
        "driver.source": "debian",
        "cuda.enabled": "true",
        "cuda.repo_url": urls["repo"].rstrip("/"),
        "cuda.repo_key": urls["repo_key"],
        "cuda.version": "12.8",
        "conda.enabled": "true",
        "conda.installer_url": urls["installer"],
        "conda.installer_sha256": urls["sha256"],
        "pytorch.python": "3.11",
        "pytorch.find_links": urls["wheels"],
        **TORCH,
    }
