"""pytorch.check as a table on recorded facts: conda env or venv, the index compat chose,
exact pip commands, the marker that makes a second run quiet and a changed request
reinstall; preflight refuses an impossible combination; GPU checks skip without a GPU."""

import dataclasses
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import declared
from fakes import FakeRemote
from provision import compat
from provision.errors import ProvisionError, Skip
from provision.facts import parse_facts, pyenv
from provision.steps import conda, cuda, driver, pytorch, users

CERT = "--cert /etc/ssl/certs/ca-certificates.crt"
DATA = Path(__file__).parent.parent / "data" / "facts"
CONDA_ENV = "/opt/conda/envs/dl"
QUIET = "--disable-pip-version-check --no-input --progress-bar off"


def context(remote, p=None, c=None, facts_file="debian-12-nspawn.txt"):
    f = dataclasses.replace(parse_facts((DATA / facts_file).read_text()), user="tester")
    settings = {
        "pytorch": p or pytorch.Settings(),
        "conda": c or conda.Settings(),
        "driver": driver.Settings(),
        "cuda": cuda.Settings(),
        "users": users.Settings(),
    }
    return declared.context(pytorch.STEP, f, settings, remote)


def check(remote, p=None, c=None, facts_file="debian-12-nspawn.txt"):
    return pytorch.check(context(remote, p, c, facts_file))


def env_state(python="3.12", versions=None, cuda_tag=None, marker=None, error="", build=None):
    return json.dumps(
        {
            "python": python,
            "versions": versions or {},
            "cuda": cuda_tag,
            "error": error,
            "marker": marker,
            "build": build,
        }
    )


def remote_with(env=None, link="", python_probe=None):
    r = FakeRemote()
    r.on(r"stat -c %F -- /opt/provision/envs/dl", (0, link) if link else (1, ""))
    r.on(r"/bin/python -c .*importlib.metadata", (127, "") if env is None else env)
    r.on(r"python3 -c .*sys.version_info", python_probe or "3.11\n")
    r.on(r"find /opt/conda/envs/dl", "")
    return r


def summaries(changes):
    return [c.summary for c in changes]


def test_gpu_host_gets_a_conda_env_with_the_cu126_wheels_compat_chose():
    # ubuntu-22.04-gpu holds a Pascal card: compat says cu126 and torch <= 2.14.
    changes = check(remote_with(), facts_file="ubuntu-22.04-gpu.txt")
    assert summaries(changes) == [
        f"create conda env {CONDA_ENV} with Python 3.12",
        f"link /opt/provision/envs/dl → {CONDA_ENV}",
        "install torch<2.15 torchvision torchaudio from https://download.pytorch.org/whl/cu126 "
        f"into {CONDA_ENV} (new environment)",
    ]
    create = changes[0].actions[0].command
    assert (
        f"/opt/conda/bin/conda create -y -p {CONDA_ENV} python=3.12 --override-channels "
        "-c conda-forge"
    ) in create
    install, marker = changes[2].actions
    assert install.timeout_s == 3600 and install.description.startswith("pip install")
    assert install.command.startswith("umask 0002 && ")
    assert (
        f"{CONDA_ENV}/bin/python -m pip install {QUIET} --index-url "
        f"https://download.pytorch.org/whl/cu126 {CERT} 'torch<2.15' torchvision torchaudio"
    ) in install.command
    assert install.command.endswith(
        f"chgrp -R -h conda -- {CONDA_ENV} && chmod -R g+rwX -- {CONDA_ENV}"
        f" && find {CONDA_ENV} -type d -exec chmod g+s '{{}}' +"
    )
    assert "-c pytorch" not in create + install.command
    assert marker.dest == f"{CONDA_ENV}/provision-pytorch.json" and marker.group == "conda"
    assert json.loads(marker.content) == {
        "index": "cu126",
        "requirements": ["torch<2.15", "torchvision", "torchaudio"],
        "extra_packages": [],
    }


@pytest.mark.parametrize("facts_file", ["debian-12-nspawn.txt", "ubuntu-24.04-fresh.txt"])
def test_pinned_cpu_build_with_mirrors_find_links_and_ca_bundle(facts_file):
    p = pytorch.Settings(
        index="cpu",
        version="2.13.0",
        index_url="https://pypi.mirror.example.edu/simple",
        extra_index_url="https://extra.example.edu/simple",
        find_links="http://127.0.0.1:8000/",
        ca_bundle="/etc/ssl/lab-ca.pem",
        extra_packages=("jupyterlab",),
        python="3.11",
    )
    changes = check(remote_with(), p, facts_file=facts_file)
    install = changes[-1].actions[0].command
    sources = (
        "--index-url https://pypi.mirror.example.edu/simple --extra-index-url "
        "https://extra.example.edu/simple --find-links http://127.0.0.1:8000/ "
        "--cert /etc/ssl/lab-ca.pem"
    )
    # The pinned release with the cpu index's label (PEP 440: `==2.13.0+cpu` matches only
    # that build; `==2.13.0` would match PyPI's CUDA one too).
    assert (
        f"{CONDA_ENV}/bin/python -m pip install {QUIET} {sources} torch==2.13.0+cpu torchvision "
        "torchaudio"
    ) in install
    # extras after torch, from the same mirror, with torch held to the request
    assert install.index("jupyterlab") > install.index("torchaudio")
    assert f"{QUIET} {sources} jupyterlab torch==2.13.0+cpu" in install
    assert "python=3.11" in changes[0].actions[0].command


def test_venv_without_conda_uses_the_system_python():
    p = pytorch.Settings(index="cpu")
    changes = check(remote_with(), p, conda.Settings(enabled=False))
    assert summaries(changes) == [
        "create venv /opt/provision/envs/dl with Python 3.11",
        "install torch torchvision torchaudio from https://download.pytorch.org/whl/cpu into "
        "/opt/provision/envs/dl (new environment)",
    ]
    assert changes[0].actions[0].command == (
        "mkdir -p -- /opt/provision/envs && rm -rf -- /opt/provision/envs/dl && "
        "python3 -m venv /opt/provision/envs/dl"
    )
    install = changes[1].actions[0].command
    python = "/opt/provision/envs/dl/bin/python"
    sources = f"--index-url https://download.pytorch.org/whl/cpu {CERT}"
    check_build = f"{python} -c {shlex.quote(pytorch.BUILD_CHECK)} cpu"
    assert install == (
        f"TMPDIR=/var/tmp PIP_CONFIG_FILE=/dev/null PIP_EXTRA_INDEX_URL= PIP_FIND_LINKS= "
        f"{python} -m pip install {QUIET} "
        f"--no-deps {sources} torch torchvision torchaudio && {check_build} && "
        f"TMPDIR=/var/tmp {python} -m pip install {QUIET} {sources} torch torchvision torchaudio"
        f" && {check_build}"
    )
    assert changes[1].actions[1].group == "root"


def test_venv_on_a_minimal_host_installs_python3_venv_first():
    changes = check(
        remote_with(python_probe="3.12\n"),
        pytorch.Settings(index="cpu"),
        conda.Settings(enabled=False),
        facts_file="ubuntu-24.04-fresh.txt",
    )
    assert summaries(changes)[0] == "install 1 package: python3-venv"


def test_venv_python_mismatch_is_refused():
    with pytest.raises(ProvisionError) as info:
        check(remote_with(), pytorch.Settings(python="3.12"), conda.Settings(enabled=False))
    assert "pytorch.python = 3.12" in info.value.message and "3.11" in info.value.message
    assert "enable the conda step" in info.value.hint


def test_venv_replaces_a_link_left_by_a_conda_env_without_clearing_through_it():
    state = env_state(python="3.11")
    changes = check(
        remote_with(state, link="symbolic link\n/opt/conda/envs/dl\n"),
        pytorch.Settings(index="cpu"),
        conda.Settings(enabled=False),
    )
    create = changes[0].actions[0].command
    assert "rm -f -- /opt/provision/envs/dl" in create and "rm -rf" not in create


CPU_REQUEST = {"index": "cpu", "requirements": ["torch==2.13.0"], "extra_packages": []}
CPU_SETTINGS = pytorch.Settings(index="cpu", version="2.13.0", packages=("torch",), python="3.11")


def installed(marker=CPU_REQUEST, version="2.13.0+cpu", build="cpu"):
    return env_state(python="3.11", versions={"torch": version}, marker=marker, build=build)


def test_second_run_no_changes():
    r = remote_with(installed(), link=f"symbolic link\n{CONDA_ENV}\n")
    assert check(r, CPU_SETTINGS) == []


def test_marker_drives_a_reinstall_when_the_version_changes():
    r = remote_with(installed(), link=f"symbolic link\n{CONDA_ENV}\n")
    (change,) = check(r, dataclasses.replace(CPU_SETTINGS, version="2.12.0"))
    assert change.summary.endswith(
        "(the request changed: requirements ['torch==2.13.0'] → ['torch==2.12.0'])"
    )
    assert "uninstall" not in change.actions[0].command  # same index: pip replaces it
    assert "torch==2.12.0" in change.actions[0].command


def test_index_change_uninstalls_the_old_build_first():
    r = remote_with(installed(), link=f"symbolic link\n{CONDA_ENV}\n")
    (change,) = check(
        r, dataclasses.replace(CPU_SETTINGS, index="cu126"), facts_file="ubuntu-22.04-gpu.txt"
    )
    command = change.actions[0].command
    assert (
        f"umask 0002 && {CONDA_ENV}/bin/python -m pip uninstall -y --disable-pip-version-check "
        "--no-input torch && "
    ) in command
    assert f"--index-url https://download.pytorch.org/whl/cu126 {CERT} torch==2.13.0" in command


def test_no_marker_or_missing_package_or_broken_torch_reinstalls():
    link = f"symbolic link\n{CONDA_ENV}\n"
    no_marker = remote_with(installed(marker=None), link=link)
    assert check(no_marker, CPU_SETTINGS)[0].summary.endswith("(no provision-pytorch.json yet)")
    gone = remote_with(installed(version=None), link=link)
    assert check(gone, CPU_SETTINGS)[0].summary.endswith("(missing torch)")
    gone_file = "torch/lib/libtorch_cpu.so is missing"
    broken = env_state("3.11", {"torch": "2.13.0+cpu"}, marker=CPU_REQUEST, error=gone_file)
    summary = check(remote_with(broken, link=link), CPU_SETTINGS)[0].summary
    assert f"torch is incomplete: {gone_file}" in summary


def test_env_with_another_python_is_recreated():
    r = remote_with(installed(), link=f"symbolic link\n{CONDA_ENV}\n")
    changes = check(r, dataclasses.replace(CPU_SETTINGS, python="3.12"))
    assert (
        summaries(changes)[0]
        == f"recreate (has Python 3.11) conda env {CONDA_ENV} with Python 3.12"
    )


def test_unshared_env_files_are_shared_again():
    r = remote_with(installed(), link=f"symbolic link\n{CONDA_ENV}\n")
    r.on(r"find /opt/conda/envs/dl", f"{CONDA_ENV}/lib/x.py\n")
    (change,) = check(r, CPU_SETTINGS)
    assert change.summary == f"share {CONDA_ENV} with group conda ({CONDA_ENV}/lib/x.py is not)"


def test_disabled_has_no_changes_and_no_preflight():
    p = pytorch.Settings(enabled=False, index="cu130")
    assert check(FakeRemote(), p, facts_file="ubuntu-22.04-gpu.txt") == []
    pytorch.preflight(context(FakeRemote(), p, facts_file="ubuntu-22.04-gpu.txt"))


def test_preflight_refuses_an_impossible_combination():
    # cu130 wheels carry no kernels for the Pascal card of this host.
    p = pytorch.Settings(index="cu130")
    with pytest.raises(compat.Incompatible):
        pytorch.preflight(context(FakeRemote(), p, facts_file="ubuntu-22.04-gpu.txt"))


def test_requirement_rules():
    chosen = compat.Choice("ubuntu-22.04", (), "pascal", 580, "proprietary", "ubuntu", "12.6",
                           "cu126", "2.14", "", ())  # fmt: skip
    assert pytorch.torch_requirement(pytorch.Settings(), chosen) == "torch<2.15"
    assert pytorch.torch_requirement(pytorch.Settings(version="2.9.1"), chosen) == "torch==2.9.1"
    unlimited = dataclasses.replace(chosen, torch_max="")
    assert pytorch.torch_requirement(pytorch.Settings(), unlimited) == "torch"
    assert [pytorch.cuda_of_index(t) for t in ("cpu", "cu118", "cu126", "cu130")] == [
        None,
        "11.8",
        "12.6",
        "13.0",
    ]


class FakeHost:
    """A testinfra-like host answering commands from a table."""

    def __init__(self, answers):
        self.answers = answers

    def run(self, command):
        for pattern, (rc, out) in self.answers.items():
            if pattern in command:
                return type("R", (), {"rc": rc, "stdout": out, "stderr": ""})()
        raise AssertionError(f"unexpected command {command}")


def test_gpu_checks_skip_without_a_gpu_and_fail_with_a_broken_driver():
    s = pytorch.Settings()
    # nvidia-smi installed (a box prepared before the card) but no GPU on the PCI bus: skipped
    no_gpu = FakeHost({"/sys/bus/pci/devices": (0, "")})
    for check_ in (pytorch.verify_cuda_available, pytorch.verify_gpu_matmul):
        with pytest.raises(Skip, match=r"no NVIDIA GPU on this host \(no PCI display device"):
            check_(no_gpu, s)
    gpu = "0000:01:00.0 0x2684 0x030000\n"  # the sysfs PCI read: an RTX 4090's display function
    broken = FakeHost({"/sys/bus/pci/devices": (0, gpu), "nvidia-smi -L": (9, "")})
    with pytest.raises(AssertionError, match="nvidia-smi -L failed"):
        pytorch.verify_cuda_available(broken, s)


@pytest.mark.parametrize(
    ("marker_index", "answer", "error"),
    [
        ("cu126", "2.13.0+cu126 12.6", None),
        ("cpu", "2.13.0+cpu None", None),
        ("cpu", "2.13.0 None", None),  # arm64's CPU wheels carry no label
        # torch's own answers on a mismatch (torch.__version__, torch.version.cuda):
        ("cu126", "2.13.0+cpu None", r"torch 2\.13\.0\+cpu is the cpu build .*cu126 build"),
        # PyPI's x86_64 torch: no label, CUDA 13.0 (what pip took on the trixie host)
        ("cpu", "2.13.0 13.0", r"torch 2\.13\.0 is the cu130 build \(torch\.version\.cuda is 13\.0\)"
         r", but the cpu build was chosen"),
        ("cu126", "2.13.0+cu128 12.8", r"is the cu128 build"),
    ],
)  # fmt: skip
def test_build_check_compares_label_and_cuda_with_the_chosen_build(marker_index, answer, error):
    marker = json.dumps({"index": marker_index})
    host = FakeHost({"cat --": (0, marker), "torch.version.cuda": (0, answer + "\n")})
    if error is None:
        pytorch.verify_cuda_tag(host, pytorch.Settings())
    else:
        with pytest.raises(AssertionError, match=error):
            pytorch.verify_cuda_tag(host, pytorch.Settings())


def test_another_build_of_the_same_release_is_drift_and_replaced():
    # The marker says cpu and the version matches, but pip put the CUDA build there (another
    # index served it): the plan says so and the fix uninstalls it first.
    r = remote_with(
        installed(version="2.13.0+cu130", build="cu130"), link=f"symbolic link\n{CONDA_ENV}\n"
    )
    (change,) = check(r, CPU_SETTINGS)
    assert change.summary.endswith(
        "(torch 2.13.0+cu130 is the cu130 build, the cpu index is chosen)"
    ), change.summary
    command = change.actions[0].command
    assert "pip uninstall -y --disable-pip-version-check --no-input torch && " in command


def test_the_torch_packages_never_come_from_the_extra_index():
    p = dataclasses.replace(CPU_SETTINGS, extra_index_url="https://pypi.example.org/simple")
    (change,) = check(remote_with(installed(marker=None)), p, c=conda.Settings(enabled=False))
    installs = [c for c in change.actions[0].command.split(" && ") if " pip install " in c]
    first, deps = installs
    assert "--no-deps" in first and "--extra-index-url" not in first, first
    assert "--extra-index-url https://pypi.example.org/simple" in deps and "--no-deps" not in deps


def fake_torch(site: Path, version: str, version_py: str | None) -> None:
    """A STAND-IN for an installed torch: its dist-info metadata and torch/version.py only."""
    dist = site / f"torch-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
    (dist / "RECORD").write_text("")
    if version_py is not None:
        (site / "torch").mkdir()
        (site / "torch" / "version.py").write_text(version_py)


@pytest.mark.parametrize(
    ("version", "version_py", "build"),
    [
        ("2.13.0+cpu", None, "cpu"),
        ("2.13.0+cu130", None, "cu130"),
        # PyPI's wheels have no tag: torch/version.py as torch's build writes it
        ("2.13.0", "__version__ = '2.13.0'\ncuda: Optional[str] = '12.8'\n", "cu128"),
        ("2.13.0", "__version__ = '2.13.0'\ncuda: Optional[str] = None\n", "cpu"),
        ("2.13.0", None, None),
    ],
)
def test_the_build_is_read_without_importing_torch(tmp_path, version, version_py, build):
    fake_torch(tmp_path, version, version_py)
    (tmp_path / "torch.py").write_text("raise SystemExit('torch was imported')\n")
    script = f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n" + pyenv.BUILD_FUNCTION
    script += "print(torch_build())"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == str(build), out


def test_build_check_after_install_fails_on_another_build(tmp_path):
    fake_torch(tmp_path, "2.13.0+cu130", None)
    prefix = f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
    wrong = subprocess.run(
        [sys.executable, "-c", prefix + pytorch.BUILD_CHECK, "cpu"], capture_output=True, text=True
    )
    assert wrong.returncode == 1, wrong
    assert "pip installed torch 2.13.0+cu130, the cu130 build, but the cpu build" in wrong.stderr
    right = subprocess.run([sys.executable, "-c", prefix + pytorch.BUILD_CHECK, "cu130"])
    assert right.returncode == 0


# --- declared reads: check and preflight read nothing else ------------------------------------

FACT_FILES = ("debian-12-nspawn.txt", "ubuntu-22.04-gpu.txt", "ubuntu-24.04-fresh.txt")


@pytest.mark.parametrize("facts_file", FACT_FILES)
@pytest.mark.parametrize("conda_enabled", [True, False])
@pytest.mark.parametrize("p", [pytorch.Settings(), CPU_SETTINGS])
@pytest.mark.parametrize(
    "answers",
    [
        lambda: remote_with(None),
        lambda: remote_with(installed(), link=f"symbolic link\n{CONDA_ENV}\n"),
        lambda: remote_with(installed(), link="directory\n"),
    ],
    ids=["bare", "conda-env", "venv"],
)
def test_check_and_preflight_read_only_what_pytorch_declares(facts_file, conda_enabled, p, answers):
    f = dataclasses.replace(parse_facts((DATA / facts_file).read_text()), user="tester")
    settings = {
        "pytorch": p,
        "conda": conda.Settings(enabled=conda_enabled),
        "driver": driver.Settings(),
        "cuda": cuda.Settings(),
        "users": users.Settings(),
    }
    r = answers().on(r"find /opt/conda", "/opt/conda/envs/dl/x\n")
    declared.check_declared(pytorch.STEP, f, settings, r)


def test_a_no_op_reads_the_environment_without_importing_torch():
    (env,) = [rd for rd in pytorch.reads(context(remote_with(None))) if "importlib" in rd.command]
    assert "import torch" not in env.command and "torch.version" not in env.command
    assert "import torch" not in pyenv.PROBE


def test_the_environment_read_runs_here_and_finds_a_deleted_package_file(tmp_path):
    """The PROBE script on this machine's Python, against a package whose RECORD lists a file
    that is gone: it names that file, and takes the versions from the metadata."""
    site = tmp_path / "site"
    pkg = site / "torch"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise SystemExit('torch must not be imported')\n")
    (pkg / "version.py").write_text("cuda = '12.6'\n")
    info = site / "torch-2.13.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.13.0\n")
    (info / "RECORD").write_text(
        "torch/__init__.py,,\ntorch/version.py,,\ntorch/lib/libtorch_cpu.so,,\n"
        "torch/__pycache__/version.cpython-311.pyc,,\n../../bin/torchrun,,\n"
        "torch-2.13.0.dist-info/RECORD,,\n"
    )
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-S", "-c", pyenv.PROBE, "torch", "numpy"]
    out = json.loads(subprocess.run(run, capture_output=True, text=True, env=env).stdout)
    assert out["versions"] == {"torch": "2.13.0", "numpy": None}
    assert out["build"] == "cu126"  # from torch/version.py's text, never an import
    assert out["error"] == "torch/lib/libtorch_cpu.so is missing"
    (pkg / "lib").mkdir()
    (pkg / "lib" / "libtorch_cpu.so").write_bytes(b"")
    out = json.loads(subprocess.run(run, capture_output=True, text=True, env=env).stdout)
    assert out["error"] == ""  # bytecode caches and scripts outside the package do not count
