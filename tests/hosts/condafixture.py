#!/usr/bin/env python3
"""FIXTURE: a stand-in conda installer for test hosts, which cannot reach GitHub or Anaconda.

It is NOT conda. It behaves like a Miniforge installer for what provision's conda and
pytorch steps use, so that their real code path (download with curl, `sha256sum -c`,
`bash installer -b -p PREFIX`, group sharing, .condarc, shell init, `conda create`, pip
into the env) runs against a real host:

- `bash installer.sh -b -p PREFIX` refuses an existing PREFIX (as the real one does), makes
  PREFIX a real Python venv of the host's python3, and unpacks its payload: `bin/conda`,
  `etc/profile.d/conda.sh` (a `conda` shell function) and `pkgs/pip-*.whl`.
- `PREFIX/bin/conda` (labelled FIXTURE in every answer): `--version`, `info`,
  `config --show`, `create -y -p PATH python=X.Y [--override-channels -c CH ...]` (a real
  venv at PATH with pip from pkgs/, only when X.Y is the host's python3: otherwise it fails
  loudly), `run -p PATH CMD...`, `tos accept ...`.

    python3 tests/hosts/condafixture.py build DIR     # prints the installer path and sha256
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tarfile
import time
from pathlib import Path

NAME = "Miniforge3-FIXTURE-Linux-x86_64.sh"
PIP_WHEELS = (Path("/usr/share/python-wheels"),)

INSTALLER = r"""#!/bin/bash
# FIXTURE conda installer for provision's tests (tests/hosts/condafixture.py): NOT conda.
# Usage like Miniforge's: bash INSTALLER -b -p PREFIX
set -eu
batch=0
prefix="$HOME/miniforge3"
while getopts "bp:" opt; do
  case "$opt" in
    b) batch=1 ;;
    p) prefix=$OPTARG ;;
    *) echo "FIXTURE installer: usage: $0 -b -p PREFIX" >&2; exit 2 ;;
  esac
done
if [ "$batch" != 1 ]; then
  echo "FIXTURE installer: only batch mode (-b) is implemented" >&2; exit 2
fi
if [ -e "$prefix" ]; then
  echo "ERROR: File or directory already exists: '$prefix'" >&2
  echo "If you want to update an existing installation, use the -u option." >&2
  exit 1
fi
echo "PREFIX=$prefix"
echo "FIXTURE: unpacking a stand-in conda (a venv of $(/usr/bin/python3 --version)), not conda"
/usr/bin/python3 -m venv --without-pip "$prefix"
line=$(awk '/^__FIXTURE_PAYLOAD_BELOW__$/ { print NR + 1; exit 0 }' "$0")
tail -n +"$line" "$0" | tar -xz -C "$prefix"
sed -i "s|@PREFIX@|$prefix|g" "$prefix/bin/conda" "$prefix/etc/profile.d/conda.sh"
chmod 0755 "$prefix/bin/conda"
mkdir -p "$prefix/conda-meta" "$prefix/envs"
echo "FIXTURE conda installed in $prefix" > "$prefix/conda-meta/history"
echo "installation finished."
exit 0
__FIXTURE_PAYLOAD_BELOW__
"""

CONDA = r'''#!@PREFIX@/bin/python3
"""FIXTURE conda (tests/hosts/condafixture.py): a stand-in for provision's tests, NOT conda."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

PREFIX = Path("@PREFIX@")
VERSION = "26.3.2"


def fail(message):
    print(f"FIXTURE conda: {message}", file=sys.stderr)
    sys.exit(1)


def host_python():
    out = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=True,
    )
    return out.stdout.strip()


def create(args):
    path, python, channels, i = None, None, [], 0
    while i < len(args):
        a = args[i]
        if a in ("-p", "--prefix"):
            path, i = args[i + 1], i + 1
        elif a in ("-c", "--channel"):
            channels.append(args[i + 1])
            i += 1
        elif a.startswith("python="):
            python = a.split("=", 1)[1]
        elif a in ("-y", "--yes", "--override-channels", "-q"):
            pass
        else:
            fail(f"create: option or spec {a!r} is not implemented by this FIXTURE")
        i += 1
    if not path or not python:
        fail("create needs -p PATH and python=X.Y")
    have = host_python()
    if python != have:
        fail(f"create: python={python} asked, but this FIXTURE can only make Python {have} "
             "(the host's python3); a real conda would fetch it from the channels")
    if os.path.exists(path):
        shutil.rmtree(path)
    print(f"FIXTURE conda: creating {path} (a venv of the host's Python {have}), "
          f"channels {', '.join(channels) or '(from .condarc)'}")
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", path], check=True)
    wheel = next(iter(sorted((PREFIX / "pkgs").glob("pip-*.whl"))), None)
    if wheel is None:
        fail(f"no pip wheel in {PREFIX / 'pkgs'}")
    subprocess.run(
        [f"{path}/bin/python", f"{wheel}/pip", "install", "--no-index", "--quiet",
         "--disable-pip-version-check", str(wheel)],
        check=True,
    )
    meta = Path(path) / "conda-meta"
    meta.mkdir(exist_ok=True)
    (meta / "history").write_text(f"# FIXTURE conda create python={python} -c {channels}\n")


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print("FIXTURE conda: --version | info | config --show | create | run | tos accept")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd in ("--version", "-V"):
        print(f"conda {VERSION}")
        print("FIXTURE: a stand-in for provision's tests, not conda", file=sys.stderr)
    elif cmd == "info":
        print(f"FIXTURE conda {VERSION}\n  base environment : {PREFIX}\n")
    elif cmd == "config" and rest[:1] == ["--show"]:
        condarc = PREFIX / ".condarc"
        print(f"# FIXTURE: {condarc}")
        print(condarc.read_text() if condarc.exists() else "")
    elif cmd == "create":
        create(rest)
    elif cmd == "run":
        if len(rest) < 3 or rest[0] not in ("-p", "--prefix"):
            fail("run needs -p PATH CMD...")
        env = dict(os.environ, PATH=f"{rest[1]}/bin:{os.environ.get('PATH', '')}")
        return subprocess.run(rest[2:], env=env).returncode
    elif cmd == "tos" and rest[:1] == ["accept"]:
        channels = [rest[i + 1] for i, a in enumerate(rest) if a in ("-c", "--channel")]
        tos = PREFIX / "conda-meta" / "tos"
        tos.mkdir(parents=True, exist_ok=True)
        for channel in channels:
            (tos / channel.replace("/", "_")).write_text("FIXTURE accepted\n")
            print(f"FIXTURE: accepted the Terms of Service for {channel}")
    else:
        fail(f"{' '.join(argv)!r} is not implemented by this FIXTURE")
    return 0


sys.exit(main(sys.argv[1:]))
'''

CONDA_SH = r"""# FIXTURE conda shell function (tests/hosts/condafixture.py): a stand-in, NOT conda.
export CONDA_EXE='@PREFIX@/bin/conda'
export _CONDA_ROOT='@PREFIX@'
conda() {
    case "${1-}" in
        activate)
            _fixture_env="${2:-@PREFIX@}"
            case "$_fixture_env" in /*) ;; *) _fixture_env="@PREFIX@/envs/$_fixture_env" ;; esac
            export CONDA_PREFIX="$_fixture_env"
            export PATH="$_fixture_env/bin:$PATH"
            ;;
        deactivate)
            if [ -n "${CONDA_PREFIX-}" ]; then
                PATH=$(printf '%s' "$PATH" | sed "s|$CONDA_PREFIX/bin:||")
                export PATH
                unset CONDA_PREFIX
            fi
            ;;
        *) "$CONDA_EXE" "$@" ;;
    esac
}
"""


def pip_wheel() -> Path:
    """A pip wheel from this machine (what the real installer would carry in pkgs/)."""
    for folder in PIP_WHEELS:
        found = sorted(folder.glob("pip-*.whl"))
        if found:
            return found[-1]
    import ensurepip

    found = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    if not found:
        raise FileNotFoundError("no pip wheel on this machine (apt-get install python3-pip-whl)")
    return found[-1]


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def build(dest: Path) -> tuple[Path, str]:
    """Write the FIXTURE installer into dest; returns (path, sha256)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    payload = io.BytesIO()
    wheel = pip_wheel()
    with tarfile.open(fileobj=payload, mode="w:gz") as tar:
        _add(tar, "bin/conda", CONDA.encode(), 0o755)
        _add(tar, "etc/profile.d/conda.sh", CONDA_SH.encode())
        _add(tar, f"pkgs/{wheel.name}", wheel.read_bytes())
    path = dest / NAME
    path.write_bytes(INSTALLER.encode() + payload.getvalue())
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="write the FIXTURE installer into DIR")
    p.add_argument("dir", type=Path)
    args = parser.parse_args()
    path, sha = build(args.dir)
    print(f"FIXTURE installer {path}\nsha256 {sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
