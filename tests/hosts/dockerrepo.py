#!/usr/bin/env python3
"""FIXTURE: a local signed apt repository laid out like Docker's (download.docker.com/linux).

Test hosts cannot reach download.docker.com, so the containers step's Docker-repository
mechanics (the key checked by fingerprint and dearmored, the `deb [signed-by=...] <url>/debian
<codename> stable` line, apt reading that suite and component) are tested against this
stand-in, served over HTTP and given as `containers.docker_repo_url` (with
`containers.docker_repo_key` = `aptrepo.key_fingerprint(root)`: a throwaway key, not Docker's).
Laid out like Docker's: `<root>/<distro>/gpg` (ASCII-armored) and the suite repository
`<root>/<distro>/dists/<codename>/stable/binary-<arch>/`. Its one package, `docker-ce`, holds
nothing and says FIXTURE in its description: it is never an engine, only something for apt to
find (the tests read `apt-cache policy`, they install nothing from here).

    python3 tests/hosts/dockerrepo.py serve DIR [--port N]
"""

from __future__ import annotations

import sys
from pathlib import Path

from aptrepo import _deb, _run, armored_key, make_key, missing_tools, sign_release, signing_home
from pkgindex import serve_command

VERSION = "5:27.3.1-1~debian.12~bookworm"  # the form of Docker's own version strings


def build(root: Path, distro: str = "debian", codename: str = "bookworm",
          arch: str = "amd64") -> Path:  # fmt: skip
    """Build the signed fixture under ROOT once (reused when complete); returns ROOT, the
    value for `containers.docker_repo_url` once served."""
    root = Path(root)
    base = root / distro
    suite = base / "dists" / codename
    if (suite / "InRelease").exists():
        return root
    reason = missing_tools()
    if reason:
        raise RuntimeError(reason)
    pool = base / "pool" / "stable"
    binary = suite / "stable" / f"binary-{arch}"
    pool.mkdir(parents=True, exist_ok=True)
    binary.mkdir(parents=True, exist_ok=True)
    with signing_home("dockerrepo-") as (work, env):
        make_key(root, env)
        (base / "gpg").write_bytes(armored_key(env))
        _deb(
            work,
            pool,
            {
                "Package": "docker-ce",
                "Version": VERSION,
                "Architecture": arch,
                "Description": "FIXTURE: stands in for Docker's docker-ce in provision tests\n"
                " it holds no engine: only apt's view of the repository is tested.",
            },
            {},
        )
        packages = _run("apt-ftparchive", "packages", "pool", cwd=base, capture_output=True)
        (binary / "Packages").write_bytes(packages.stdout)
        _run("gzip", "-9kf", "Packages", cwd=binary)
        sign_release(
            suite, env, "FIXTURE standing in for Docker", arch,
            f"APT::FTPArchive::Release::Suite={codename}",
            f"APT::FTPArchive::Release::Codename={codename}",
            "APT::FTPArchive::Release::Components=stable",
        )  # fmt: skip
    return root


def main() -> int:
    return serve_command(
        __doc__.splitlines()[0], build, "build DIR if needed and serve it until interrupted"
    )


if __name__ == "__main__":
    sys.exit(main())
