"""pytorch's install command run for real: the pip of a throwaway venv against local package
indexes (PEP 503 pages and find-links folders under tmp_path, file:// URLs; no network).

The packages are STAND-INS: tiny wheels named torch / nvidia-cublas-fake with the version,
local label and torch/version.py of the builds they stand for (2.13.0+cpu as
download.pytorch.org/whl/cpu serves it; 2.13.0 as PyPI serves it, a CUDA 13.0 build that
depends on nvidia-* wheels). What is expected comes from pip and PEP 440, not from the code:
`==2.13.0` matches any local label, `==2.13.0+cpu` only that one; pip takes the highest
version from all its sources and appends the sources a pip.conf or PIP_* variable configures
to those on its command line.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pip
import pytest

from provision import prefetch
from provision.step import Download
from provision.steps import pytorch
from provision.steps.pytorch_install import Layout, install_command, pinned

CUDA_DEP = "nvidia-cublas-fake"  # stands for the ~2 GB of nvidia-* wheels of a CUDA build


def wheel(folder: Path, name: str, version: str, tag: str = "py3-none-any", cuda=None,
          requires=()) -> Path:  # fmt: skip
    """A STAND-IN wheel; a torch one has torch/version.py with `cuda` as torch's build sets it."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    files = {}
    if name == "torch":
        files["torch/__init__.py"] = f"__version__ = {version!r}\n"
        files["torch/version.py"] = f"__version__ = {version!r}\ncuda = {cuda!r}\n"
    else:
        files[f"{name.replace('-', '_')}/__init__.py"] = ""
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{dist}/METADATA"] = meta + "".join(f"Requires-Dist: {r}\n" for r in requires)
    files[f"{dist}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n"
    )
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    path = folder / f"{name.replace('-', '_')}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name_, text in files.items():
            z.writestr(name_, text)
    return path


def index(root: Path, *wheels: Path) -> str:
    """A PEP 503 simple index of these wheels; its file:// URL."""
    for w in wheels:
        project = root / "simple" / w.name.split("-")[0].replace("_", "-").lower()
        project.mkdir(parents=True, exist_ok=True)
        page = project / "index.html"
        rel = os.path.relpath(w, project)
        old = page.read_text() if page.exists() else ""
        page.write_text(old + f'<a href="{rel}">{w.name}</a><br>\n')
    return f"file://{root}/simple"


@pytest.fixture
def env(tmp_path):
    """A venv with pip (copied from this interpreter's: no network, no ensurepip wheel)."""
    path = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    site = next(path.glob("lib/python*/site-packages"))
    shutil.copytree(Path(pip.__file__).parent, site / "pip")
    return Layout(str(path), str(path), "", "", ())


def clean_environ(tmp_path, **extra) -> dict[str, str]:
    """This process's environment without pip's variables or config files (this machine sets
    PIP_FIND_LINKS=/opt/wheels and has an /etc/pip.conf), plus `extra`."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    environ.update(HOME=str(tmp_path), PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR="1")
    environ.update(extra)
    return environ


def run(command: str, environ) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=environ,
                          timeout=120)  # fmt: skip


def installed(layout: Layout) -> dict[str, str]:
    """name → version of what the env's pip lists (its own pip is no distribution here)."""
    out = subprocess.run(
        [layout.python, "-c", "import importlib.metadata as md, json; "
         "print(json.dumps({d.metadata['Name']: d.version for d in md.distributions()}))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    import json

    return json.loads(out.stdout)


def command_for(s: pytorch.Settings, layout: Layout, tag: str = "cpu", arch: str = "amd64"):
    """The step's own pip command for these settings (the requirement as check builds it)."""
    chosen = type("Chosen", (), {"torch_version": "", "torch_max": "2.14"})()
    reqs = pinned(pytorch.requirements(s, chosen), tag, arch)
    return install_command(s, layout, tag, reqs, uninstall_first=False)


def test_a_pinned_release_is_never_another_sources_build(tmp_path, env):
    # The trixie host: the chosen build (find-links) exists for another Python only, and the
    # index also serves PyPI's 2.13.0 (CUDA 13.0, with its nvidia wheels). `torch==2.13.0`
    # matches PyPI's (PEP 440 ignores the label then); `torch==2.13.0+cpu` cannot.
    links = tmp_path / "links"
    wheel(links, "torch", "2.13.0+cpu", tag="py2-none-any")  # no wheel for this Python
    pypi = tmp_path / "pypi"
    url = index(pypi, wheel(pypi / "f", "torch", "2.13.0", cuda="13.0", requires=[CUDA_DEP]),
                wheel(pypi / "f", CUDA_DEP, "13.0.0"))  # fmt: skip
    s = pytorch.Settings(index="cpu", version="2.13.0", packages=("torch",), index_url=url,
                         find_links=str(links))  # fmt: skip
    out = run(command_for(s, env), clean_environ(tmp_path))
    assert installed(env) == {}, "nothing may be installed (no CUDA torch, no nvidia wheels)"
    assert out.returncode != 0, out
    assert "No matching distribution found for torch==2.13.0+cpu" in out.stderr, out.stderr


def test_a_range_stops_at_another_build_before_its_dependencies(tmp_path, env):
    # No version asked (torch<2.15): a find-links page of the user's offers a newer PyPI-style
    # CUDA build; pip takes the highest version of all sources. The build check right after
    # the torch packages' own install stops before their gigabytes of dependencies.
    links = tmp_path / "links"
    wheel(links, "torch", "2.14.0", cuda="13.0", requires=[CUDA_DEP])
    wheel(links, CUDA_DEP, "13.0.0")
    chosen = tmp_path / "chosen"
    url = index(chosen, wheel(chosen / "f", "torch", "2.13.0+cpu"))
    s = pytorch.Settings(index="cpu", packages=("torch",), index_url=url, find_links=str(links))
    out = run(command_for(s, env), clean_environ(tmp_path))
    assert CUDA_DEP not in installed(env), installed(env)
    assert out.returncode == 1, out
    assert "pip installed torch 2.14.0, the cu130 build, but the cpu build was chosen" in (
        out.stderr
    ), out.stderr


@pytest.mark.parametrize("where", ["pip.conf", "environment"])
def test_an_extra_index_the_host_configures_is_no_source_for_torch(tmp_path, env, where):
    # /etc/pip.conf (or PIP_EXTRA_INDEX_URL) names a PyPI mirror with a newer CUDA build: pip
    # adds it to the command line's sources; the torch packages' install ignores it.
    other = tmp_path / "other"
    wrong = index(other, wheel(other / "f", "torch", "2.14.0+cu130", requires=[CUDA_DEP]),
                  wheel(other / "f", CUDA_DEP, "13.0.0"))  # fmt: skip
    chosen = tmp_path / "chosen"
    url = index(chosen, wheel(chosen / "f", "torch", "2.13.0+cpu"))
    if where == "pip.conf":
        conf = tmp_path / "pip.conf"
        conf.write_text(f"[global]\nextra-index-url = {wrong}\n")
        environ = clean_environ(tmp_path, PIP_CONFIG_FILE=str(conf))
    else:
        environ = clean_environ(tmp_path, PIP_EXTRA_INDEX_URL=wrong)
    s = pytorch.Settings(index="cpu", packages=("torch",), index_url=url)
    out = run(command_for(s, env), environ)
    assert out.returncode == 0, out
    assert installed(env) == {"torch": "2.13.0+cpu"}, installed(env)


def test_the_same_sources_without_the_fix_would_take_the_configured_build(tmp_path, env):
    # The control for the case above: pip itself does take the configured index's build when
    # nothing stops it (so the case above proves something).
    other = tmp_path / "other"
    wrong = index(other, wheel(other / "f", "torch", "2.14.0+cu130"))
    chosen = tmp_path / "chosen"
    url = index(chosen, wheel(chosen / "f", "torch", "2.13.0+cpu"))
    environ = clean_environ(tmp_path, PIP_EXTRA_INDEX_URL=wrong)
    out = run(f"{env.python} -m pip install --no-deps --index-url {url} 'torch<2.15'", environ)
    assert out.returncode == 0, out
    assert installed(env) == {"torch": "2.14.0+cu130"}


def test_pip_runs_with_its_temporary_files_on_disk(tmp_path, env):
    # Every pip call of the install gets TMPDIR=/var/tmp whatever the caller's TMPDIR (/tmp is
    # a RAM tmpfs on Debian 13): a wrapper in front of the env's python records it.
    chosen = tmp_path / "chosen"
    url = index(chosen, wheel(chosen / "f", "torch", "2.13.0+cpu"))
    log = tmp_path / "tmpdirs"
    front = tmp_path / "front"
    (front / "bin").mkdir(parents=True)
    (front / "bin" / "python").write_text(
        f'#!/bin/sh\n[ "$1 $2" = "-m pip" ] && echo "$TMPDIR" >> {log}\nexec {env.python} "$@"\n'
    )
    (front / "bin" / "python").chmod(0o755)
    layout = Layout(str(front), str(front), "", "", ())
    s = pytorch.Settings(index="cpu", version="2.13.0", packages=("torch",), index_url=url,
                         extra_packages=("torch",))  # fmt: skip
    out = run(command_for(s, layout), clean_environ(tmp_path, TMPDIR="/tmp"))
    assert out.returncode == 0, out
    assert log.read_text().split() == ["/var/tmp"] * 3, log.read_text()  # torch, deps, extras
    assert installed(env) == {"torch": "2.13.0+cpu"}


def test_the_prefetch_folder_still_ends_every_pip_install(tmp_path, env):
    # The fetcher's folder (the chosen source's very wheels) is the last --extra-index-url of
    # each pip install; with it the install works with the chosen index gone.
    chosen = tmp_path / "chosen"
    fetched = wheel(chosen / "f", "torch", "2.13.0+cpu")
    url = index(chosen, fetched)
    s = pytorch.Settings(index="cpu", version="2.13.0", packages=("torch",), index_url=url)
    command = command_for(s, env)
    dest = f"{env.python} -m pip install"
    item = prefetch.Item("wheels:pytorch", calls=(Download("wheels", (), dest=dest),))
    with_folder = prefetch.last_index(command, item)
    folder = f"--extra-index-url file://{prefetch.WHEELS}/pytorch/simple"
    installs = [c for c in with_folder.split(" && ") if " pip install " in c]
    assert len(installs) == 2 and all(c.endswith(folder) for c in installs), installs
    # The same, with a real folder in place of PREFETCH's and the chosen index emptied.
    here = tmp_path / "prefetched"
    here.mkdir()
    index(here, Path(shutil.copy(fetched, here)))
    shutil.rmtree(chosen / "simple")
    (chosen / "simple").mkdir()
    real = with_folder.replace(f"file://{prefetch.WHEELS}/pytorch/simple", f"file://{here}/simple")
    out = run(real, clean_environ(tmp_path))
    assert out.returncode == 0, out
    assert installed(env) == {"torch": "2.13.0+cpu"}


@pytest.mark.parametrize(
    ("reqs", "tag", "arch", "expected"),
    [
        (["torch==2.13.0", "torchvision"], "cu126", "amd64", ["torch==2.13.0+cu126", "torchvision"]),
        (["torch<2.15"], "cpu", "amd64", ["torch<2.15"]),  # a range cannot ask for a label
        (["torch==2.13.0"], "cpu", "arm64", ["torch==2.13.0"]),  # arm64 CPU wheels: no label
        (["torch==2.13.0"], "cu128", "arm64", ["torch==2.13.0+cu128"]),
        (["torch==2.13.0rc1"], "cpu", "amd64", ["torch==2.13.0rc1+cpu"]),
    ],
)  # fmt: skip
def test_pinned_adds_the_label_of_the_chosen_index(reqs, tag, arch, expected):
    assert pinned(reqs, tag, arch) == expected


def test_an_http_mirror_stays_trusted_without_pip_conf(tmp_path):
    # pip ignores an http index that is not a trusted-host (localhost aside); the torch
    # packages' call reads no pip.conf, so it names the trusted hosts of its own sources.
    layout = Layout(str(tmp_path / "env"), str(tmp_path / "env"), "", "", ())
    s = pytorch.Settings(index="cu126", version="2.13.0", index_url="http://u:p@mirror.lab:8080/cu126",
                         find_links="https://wheels.lab/")  # fmt: skip
    first = command_for(s, layout, tag="cu126").split(" && ")[0]
    assert "--trusted-host mirror.lab:8080" in first  # not the https find-links
    assert first.count("--trusted-host") == 1, first
