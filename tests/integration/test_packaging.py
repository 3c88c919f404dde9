"""The install paths the README gives, run for real: `python -m build` makes an sdist and a
wheel that carry the templates and pass `twine check`; `pipx install` and `uv tool install`
of the wheel, on the distribution's own /usr/bin/python3, give a working `provision`.

Needs PyPI (the build backend and the dependencies) and pipx (apt-get install pipx).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import provision

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """The sdist and the wheel of this checkout, built as a user would."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    wheel = next(out.glob("provision_dl-*.whl"))
    sdist = next(out.glob("provision_dl-*.tar.gz"))
    return wheel, sdist


def clean_env(**extra: str) -> dict[str, str]:
    """A user's shell: the system's directories on PATH only, no virtualenv of ours."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": os.environ.get("HOME", "/root")}
    for key in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.update(extra)
    return env


def test_wheel_carries_every_template_and_the_metadata(dist):
    wheel, _sdist = dist
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = [p.relative_to(ROOT / "templates") for p in (ROOT / "templates").rglob("*.j2")]
    assert templates, "no templates in the checkout?"
    for rel in templates:
        assert f"provision/templates/{rel}" in names
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "Name: provision-dl\n" in text
    assert f"Version: {provision.__version__}\n" in text
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "provision = provision.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_twine_check_passes(dist):
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_pipx_install_on_the_system_python(dist, tmp_path):
    if not shutil.which("pipx", path="/usr/bin"):
        pytest.fail("pipx is missing: apt-get install pipx (tests/run installs it)")
    wheel, _sdist = dist
    env = clean_env(PIPX_HOME=str(tmp_path / "pipx"), PIPX_BIN_DIR=str(tmp_path / "bin"))
    subprocess.run(
        ["pipx", "install", "--python", SYSTEM_PYTHON, str(wheel)],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    out = subprocess.run(
        [tmp_path / "bin" / "provision", "--version"], env=env, capture_output=True, text=True
    )
    assert out.stdout.strip() == f"provision, version {provision.__version__}", out.stderr


def test_uv_tool_install_on_the_system_python(dist, tmp_path):
    uv = Path(sys.executable).parent / "uv"
    if not uv.exists():
        pytest.fail("uv is missing from the test venv (it is in the [test] extra)")
    wheel, _sdist = dist
    env = clean_env(
        UV_TOOL_DIR=str(tmp_path / "tools"),
        UV_TOOL_BIN_DIR=str(tmp_path / "bin"),
        UV_CACHE_DIR=str(tmp_path / "cache"),
        UV_PYTHON=SYSTEM_PYTHON,
        UV_NATIVE_TLS="1",  # the system's CA store: a lab's TLS proxy CA lives there
    )
    result = subprocess.run(
        [str(uv), "tool", "install", str(wheel)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    out = subprocess.run(
        [tmp_path / "bin" / "provision", "--version"], env=env, capture_output=True, text=True
    )
    assert out.stdout.strip() == f"provision, version {provision.__version__}", out.stderr
