#!/usr/bin/env python3
"""FIXTURE: a local signed apt repository standing in for NVIDIA's container toolkit one.

Test hosts cannot reach nvidia.github.io, so the containers step's toolkit mechanics (the key
checked by fingerprint and dearmored into the keyring, the signed-by source, the pin, the
package, daemon.json's nvidia runtime, the udev rule) are tested against this stand-in, served
over HTTP and given as `containers.toolkit_repo_url` (with `containers.toolkit_repo_key` =
`aptrepo.key_fingerprint(root)`: a throwaway key made for the test session, not NVIDIA's).
Laid out like NVIDIA's: `<root>/gpgkey` (ASCII-armored) and the flat repository
`<root>/stable/deb/amd64/`. Its one package says FIXTURE in its description:

- `nvidia-container-toolkit` 1.18.0-1: `/usr/bin/nvidia-ctk`, a script that prints a version
  line and says what it was asked (it generates no CDI spec and links no device: there is no
  GPU), and `/usr/bin/nvidia-container-runtime`, which runs `runc` with the arguments it was
  given: it adds no GPU, but Docker really starts containers through it.

    python3 tests/hosts/toolkitrepo.py serve DIR [--port N]
"""

from __future__ import annotations

import sys
from pathlib import Path

from aptrepo import _deb, armored_key, make_key, missing_tools, sign_flat, signing_home
from pkgindex import serve_command

VERSION = "1.18.0-1"
NVIDIA_CTK = """#!/bin/sh
# FIXTURE: stands in for NVIDIA's nvidia-ctk in provision's tests; it touches no device.
case "$1" in
  --version) echo "NVIDIA Container Toolkit CLI version 1.18.0 (FIXTURE: provision tests)";;
  *) echo "nvidia-ctk (FIXTURE): $*" >&2;;
esac
"""
RUNTIME = """#!/bin/sh
# FIXTURE: stands in for NVIDIA's nvidia-container-runtime: plain runc, no GPU added.
exec runc "$@"
"""


def build(root: Path, arch: str = "amd64") -> Path:
    """Build the signed fixture under ROOT once (reused when complete); returns ROOT, the
    value for `containers.toolkit_repo_url` once served."""
    root = Path(root)
    repo = root / "stable" / "deb" / arch
    if (repo / "InRelease").exists():
        return root
    reason = missing_tools()
    if reason:
        raise RuntimeError(reason)
    repo.mkdir(parents=True, exist_ok=True)
    with signing_home("toolkitrepo-") as (work, env):
        make_key(root, env)
        (root / "gpgkey").write_bytes(armored_key(env))
        _deb(
            work,
            repo,
            {
                "Package": "nvidia-container-toolkit",
                "Version": VERSION,
                "Architecture": arch,
                "Depends": "runc",
                "Description": "FIXTURE: stands in for NVIDIA's container toolkit in "
                "provision tests\n nvidia-ctk and the runtime are scripts; no GPU is used.",
            },
            {
                "/usr/bin/nvidia-ctk": (NVIDIA_CTK.encode(), 0o755),
                "/usr/bin/nvidia-container-runtime": (RUNTIME.encode(), 0o755),
            },
        )
        sign_flat(repo, env, "FIXTURE standing in for NVIDIA's container toolkit", arch)
    return root


def main() -> int:
    return serve_command(
        __doc__.splitlines()[0], build, "build DIR if needed and serve it until interrupted"
    )


if __name__ == "__main__":
    sys.exit(main())
