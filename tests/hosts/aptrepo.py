#!/usr/bin/env python3
"""FIXTURE: a local signed apt repository standing in for NVIDIA's CUDA repository.

Test hosts cannot reach developer.download.nvidia.com, so the cuda step's repository
mechanics (cuda-keyring, the signed-by source, the pin, the versioned toolkit package) are
tested against this stand-in, served over HTTP on 127.0.0.1 and given as `cuda.repo_url`.
Nothing in it comes from NVIDIA: a throwaway GPG key made for the test session signs it,
and its two packages say FIXTURE in their descriptions:

- `cuda-keyring` 1.1-1 (all): `/usr/share/keyrings/cuda-archive-keyring.gpg` (the fixture's
  public key) and `/etc/apt/sources.list.d/cuda-<distro>-<arch>.list`, laid out like the real
  package (whose list names NVIDIA's URL; the cuda step replaces it with the mirror's);
- `cuda-toolkit-12-8`: `/usr/local/cuda-12.8/bin/nvcc`, a shell script that prints an
  nvcc-like version banner. It compiles nothing.

Layout: a flat repository `<root>/<distro>/<arch>/` (Packages, Packages.gz, Release,
InRelease, Release.gpg), like NVIDIA's. Its key is not NVIDIA's, so a host using it sets
`cuda.repo_key` to `key_fingerprint(root)` (kept in `<root>/fixture-key.fpr`). Needs gpg, dpkg-deb and apt-ftparchive
(apt-get install gnupg dpkg apt-utils).

    python3 tests/hosts/aptrepo.py serve DIR [--port N]   # builds DIR if needed, serves it
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pkgindex import serve_command

OFFICIAL = "https://developer.download.nvidia.com/compute/cuda/repos"
FINGERPRINT_FILE = "fixture-key.fpr"
KEYRING = "/usr/share/keyrings/cuda-archive-keyring.gpg"
DEB_ARCH = {"x86_64": "amd64", "sbsa": "arm64"}
TOOLS = ("gpg", "gpgconf", "dpkg-deb", "apt-ftparchive")
NVCC = """#!/bin/sh
# FIXTURE: stands in for NVIDIA's nvcc in provision's tests; it compiles nothing.
echo "nvcc: NVIDIA (R) Cuda compiler driver"
echo "Copyright (c) 2005-2025 NVIDIA Corporation (FIXTURE: provision test repository)"
echo "Built on Wed_Jan_15_19:20:09_PST_2025"
echo "Cuda compilation tools, release {version}, V{version}.93"
echo "Build cuda_{version}.r{version}/compiler.35404655_0"
"""


def missing_tools() -> str:
    """Why the fixture cannot be built here ('' when it can)."""
    for tool in TOOLS:
        if not shutil.which(tool):
            return f"the CUDA apt repository fixture needs {tool} (apt-get install gnupg apt-utils)"
    return ""


def _run(*argv: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, env={**os.environ, **(env or {})}, **kwargs)


def _deb(work: Path, out_dir: Path, control: dict[str, str], files: dict[str, tuple[bytes, int]],
         conffiles: tuple[str, ...] = ()) -> Path:  # fmt: skip
    """Build one .deb with dpkg-deb from {path: (content, mode)}."""
    root = work / f"{control['Package']}-root"
    (root / "DEBIAN").mkdir(parents=True)
    for path, (content, mode) in files.items():
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(content)
        dest.chmod(mode)
    fields = {"Maintainer": "provision tests <fixture@invalid>", **control}
    (root / "DEBIAN/control").write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
    if conffiles:
        (root / "DEBIAN/conffiles").write_text("".join(f"{c}\n" for c in conffiles))
    name = f"{control['Package']}_{control['Version']}_{control['Architecture']}.deb"
    _run("dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out_dir / name),
         stdout=subprocess.DEVNULL)  # fmt: skip
    return out_dir / name


@contextlib.contextmanager
def signing_home(prefix: str) -> Iterator[tuple[Path, dict]]:
    """(a work folder, the env naming a GNUPGHOME of its own in it) for one fixture build; its
    gpg-agent is stopped and the folder deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        gnupg = work / "gnupg"
        gnupg.mkdir(mode=0o700)
        env = {"GNUPGHOME": str(gnupg)}
        try:
            yield work, env
        finally:
            subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, **env}, check=False)


def make_key(root: Path, env: dict) -> bytes:
    """A throwaway signing key in env's GNUPGHOME; its fingerprint is kept in ROOT's
    FINGERPRINT_FILE. Returns the public key (binary)."""
    uid = "provision test fixture (FIXTURE, not NVIDIA) <fixture@invalid>"
    _run("gpg", "--batch", "--quiet", "--passphrase", "", "--quick-gen-key", uid,
         "ed25519", "sign", "never", env=env)  # fmt: skip
    public = _run("gpg", "--batch", "--export", env=env, capture_output=True).stdout
    listed = _run("gpg", "--batch", "--with-colons", "--list-keys", env=env,
                  capture_output=True, text=True).stdout  # fmt: skip
    fpr = next(ln.split(":")[9] for ln in listed.splitlines() if ln.startswith("fpr:"))
    (root / FINGERPRINT_FILE).write_text(fpr + "\n")
    return public


def armored_key(env: dict) -> bytes:
    """The public key of env's GNUPGHOME, ASCII-armored (as vendors publish theirs)."""
    return _run("gpg", "--batch", "--armor", "--export", env=env, capture_output=True).stdout


def sign_release(folder: Path, env: dict, label: str, arch: str, *options: str) -> None:
    """Write FOLDER's Release (apt-ftparchive, with extra `-o` OPTIONS) and sign it
    (InRelease last: it marks the repository complete)."""
    flags = [
        f"APT::FTPArchive::Release::{k}={v}"
        for k, v in (("Origin", "provision-fixture"), ("Label", label), ("Architectures", arch))
    ]
    argv = [a for f in (*flags, *options) for a in ("-o", f)]
    release = _run("apt-ftparchive", *argv, "release", ".", cwd=folder, capture_output=True)
    (folder / "Release").write_bytes(release.stdout)
    _run("gpg", "--batch", "--yes", "--clearsign", "-o", "InRelease.tmp", "Release",
         cwd=folder, env=env)  # fmt: skip
    _run("gpg", "--batch", "--yes", "--armor", "--detach-sign", "-o", "Release.gpg",
         "Release", cwd=folder, env=env)  # fmt: skip
    (folder / "InRelease.tmp").rename(folder / "InRelease")


def sign_flat(repo: Path, env: dict, label: str, arch: str) -> None:
    """Index the .debs in the flat repository REPO and sign it."""
    packages = _run("apt-ftparchive", "packages", ".", cwd=repo, capture_output=True)
    (repo / "Packages").write_bytes(packages.stdout)
    _run("gzip", "-9kf", "Packages", cwd=repo)
    sign_release(repo, env, label, arch)


def build(root: Path, distro: str = "debian12", arch_dir: str = "x86_64",
          toolkit: str = "12.8") -> Path:  # fmt: skip
    """Build the signed fixture repository under ROOT (once: reused when complete); returns
    ROOT, the value for `cuda.repo_url` once served."""
    root = Path(root)
    repo = root / distro / arch_dir
    if (repo / "InRelease").exists():
        return root
    reason = missing_tools()
    if reason:
        raise RuntimeError(reason)
    repo.mkdir(parents=True, exist_ok=True)
    with signing_home("aptrepo-") as (work, env):
        public = make_key(root, env)
        list_name = f"/etc/apt/sources.list.d/cuda-{distro}-{arch_dir}.list"
        list_line = f"deb [signed-by={KEYRING}] {OFFICIAL}/{distro}/{arch_dir}/ /\n"
        _deb(
            work,
            repo,
            {
                "Package": "cuda-keyring",
                "Version": "1.1-1",
                "Architecture": "all",
                "Description": "FIXTURE: stands in for NVIDIA's cuda-keyring in provision "
                "tests\n its key is a throwaway test key, not NVIDIA's.",
            },
            {KEYRING: (public, 0o644), list_name: (list_line.encode(), 0o644)},
            conffiles=(list_name,),
        )
        dashed = toolkit.replace(".", "-")
        _deb(
            work,
            repo,
            {
                "Package": f"cuda-toolkit-{dashed}",
                "Version": f"{toolkit}.1-1",
                "Architecture": DEB_ARCH[arch_dir],
                "Description": f"FIXTURE: stands in for NVIDIA's CUDA {toolkit} toolkit in "
                "provision tests\n it ships an nvcc script that prints a version banner.",
            },
            {
                f"/usr/local/cuda-{toolkit}/bin/nvcc": (
                    NVCC.format(version=toolkit).encode(),
                    0o755,
                )
            },
        )
        sign_flat(repo, env, "FIXTURE standing in for NVIDIA CUDA", DEB_ARCH[arch_dir])
    return root


def key_fingerprint(root: Path) -> str:
    """The fingerprint of the fixture's signing key: the value for `cuda.repo_key`."""
    return (Path(root) / FINGERPRINT_FILE).read_text().strip()


def main() -> int:
    return serve_command(
        __doc__.splitlines()[0], build, "build DIR if needed and serve it until interrupted"
    )


if __name__ == "__main__":
    sys.exit(main())
