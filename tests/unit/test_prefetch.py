"""The background fetcher (provision.prefetch): what steps declare, the fetcher's command, when
the runner starts it (apply with something to fetch only), and how an install waits for it."""

from __future__ import annotations

import dataclasses
import shlex
import threading
import time
from pathlib import Path

from fakes import FakeRemote
from provision import prefetch, shell
from provision.changes import Change, Run
from provision.config import HostConfig
from provision.facts import parse_facts
from provision.output import Reporter
from provision.remote import Connection
from provision.runner import run_hosts
from provision.step import Context, Download, Step
from provision.steps import STEPS

DATA = Path(__file__).parent.parent / "data" / "facts"
FACTS = (DATA / "debian-12-docker.txt").read_text()


@dataclasses.dataclass(frozen=True)
class NoSettings:
    pass


class FakeStream:
    """A stream that hands out scripted lines, then ends."""

    def __init__(self, lines, gate: threading.Event | None = None) -> None:
        self.lines = list(lines)
        self.gate = gate
        self.closed = False

    def readline(self, timeout_s: float):
        if self.gate is not None and not self.gate.is_set():
            self.gate.wait(timeout_s)
            return None
        return self.lines.pop(0) if self.lines else ""

    def send(self, text: str) -> None:
        pass

    def close(self) -> str:
        self.closed = True
        return ""

    def alive(self) -> bool:
        return not self.closed


class StreamRemote(FakeRemote):
    """FakeRemote with side channels: the run lock is granted, the fetcher's lines scripted."""

    supports_streams = True

    def __init__(self, fetcher_lines=(), gate=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fetcher_lines = fetcher_lines
        self.gate = gate
        self.streams: list[str] = []

    def _open_stream(self, command: str):
        self.streams.append(command)
        if "provision-run-lock" in command:
            return FakeStream(["locked"])
        return FakeStream(self.fetcher_lines, self.gate)


def hc():
    return HostConfig(
        "box", Connection(host="box", addr="192.0.2.1", user="root"), {"fake": NoSettings()}, {}
    )


def apt_step(downloads, applied):
    install = shell.apt_get("install", "--no-install-recommends", "jq")

    def check(ctx):
        return [] if applied else [Change("install jq", (Run(install),))]

    return Step("fake", "t", NoSettings, check, (), downloads=downloads)


def run(remote, steps, plan=False):
    def factory(connection, **kwargs):
        remote.log = kwargs["log"]
        return remote

    remote.on(r"@@os-release", FACTS)
    return run_hosts([hc()], steps, plan=plan, reporter=Reporter(), remote_factory=factory,
                     log_dir=Path("/tmp/provision-test-prefetch"))  # fmt: skip


def test_the_fetcher_command_uses_a_private_apt_state_without_locks():
    item = prefetch.Item("apt:base", ("jq", "tmux"))
    command = prefetch.fetch_command([item], [])
    assert command.startswith("sh -c '# provision prefetch\n")
    for option in (
        "Debug::NoLocking=true",
        "Dir::State::Lists=/var/cache/provision/prefetch/lists",
        "Dir::Etc::SourceParts=/var/cache/provision/prefetch/sources.list.d",
        "Dir::Cache::Archives=/var/cache/provision/prefetch/archives",
    ):
        assert option in command
    assert " update" in command and "-d install --no-install-recommends" in command
    assert "for p in jq tmux; do" in command
    assert "Dir::State::status" not in command  # the host's dpkg status: only what is missing


def test_a_declared_source_and_a_file_go_into_the_script_and_tokens_are_redacted():
    source = Download("source", dest="/etc/apt/sources.list.d/x.sources", content="Types: deb\n")
    url = "https://user:s3cret@mirror.example/Miniforge3.sh"
    file = prefetch.Item("file:/var/cache/provision/M.sh", download=Download(
        "file", url=url, sha256="ab" * 32, dest="/var/cache/provision/M.sh"))  # fmt: skip
    command = prefetch.fetch_command([file], [source])
    assert "prefetch/sources.list.d/x.sources" in command and "Types: deb" in command
    assert "sha256sum -c" in command and "prefetch/files/M.sh.part" in command
    assert "apt-helper download-file" in command  # a fresh box may not have curl yet
    assert "apt-get" not in command.split("echo started", 1)[1]  # no packages: no apt update
    assert "s3cret" not in shell.redact(command)
    assert "s3cret" not in command.splitlines()[0]  # the line open_stream transcribes


def test_every_step_with_packages_declares_what_is_missing_only():
    facts = parse_facts(FACTS)

    settings = {s.key: s.settings() for s in STEPS}
    ctx = Context("box", facts, settings, gathered={}, strict=True)
    base = next(s for s in STEPS if s.name == "base")
    (declared,) = base.downloads(ctx)
    assert declared.kind == "apt"
    assert "dkms" in declared.names  # not installed in that image (its facts file)
    assert "build-essential" not in declared.names  # installed there
    assert not any(facts.installed(n) for n in declared.names)
    package = type(next(iter(facts.packages.values())))
    have = {**facts.packages, **{n: package("1.0", "ii ") for n in declared.names}}
    installed = dataclasses.replace(facts, packages=have)
    ctx = Context("box", installed, settings, gathered={}, strict=True)
    assert base.downloads(ctx) == []


def test_apply_starts_one_fetcher_and_the_install_waits_then_links(tmp_path):
    remote = StreamRemote(["begin apt:fake", "done apt:fake 3 3000", "end"])
    applied = []
    remote.on(r"apt-get -y -q .* install", "")
    original = remote._exec

    def _exec(command, timeout_s, stdin):
        if "install --no-install-recommends jq" in command:
            applied.append(command)
        return original(command, timeout_s, stdin)

    remote._exec = _exec
    remote.on(r"rm -rf -- /var/cache/provision/prefetch", "")
    step = apt_step(lambda ctx: [Download("apt", ("jq",))], applied)
    (result,) = run(remote, (step,))
    assert not result.error, result.error
    fetchers = [c for c in remote.streams if "provision-prefetch" in c]
    assert len(fetchers) == 1
    assert "for p in jq; do" in fetchers[0]
    (install,) = applied
    assert install.index("prefetch/archives/*.deb /var/cache/apt/archives/") < install.index(
        "apt-get -y"
    )
    assert any("rm -rf -- /var/cache/provision/prefetch" in c for c in remote.ran)


def test_plan_never_fetches():
    remote = StreamRemote(["done apt:fake 1 1", "end"])
    step = apt_step(lambda ctx: [Download("apt", ("jq",))], [])
    (result,) = run(remote, (step,), plan=True)
    assert result.steps[0].status == "planned"
    assert not [c for c in remote.streams if "provision-prefetch" in c]


def test_nothing_to_download_starts_nothing_and_no_cleanup():
    remote = StreamRemote()
    calls = []
    step = apt_step(lambda ctx: calls.append(1) or [], ["done"])
    (result,) = run(remote, (step,))
    assert calls and not result.error
    assert remote.streams == [s for s in remote.streams if "provision-run-lock" in s]
    assert not any("prefetch" in c for c in remote.ran)
    assert result.commands == 3  # facts, run lock, declared reads


def test_no_prefetch_turns_it_off(monkeypatch):
    monkeypatch.setenv("PROVISION_NO_PREFETCH", "1")
    remote = StreamRemote()
    remote.on(r"apt-get -y -q .* install", "")
    step = apt_step(lambda ctx: [Download("apt", ("jq",))], [])
    run(remote, (step,))
    assert not [c for c in remote.streams if "provision-prefetch" in c]
    install = next(c for c in remote.ran if "install --no-install-recommends jq" in c)
    assert "prefetch" not in install


def test_an_install_waits_for_its_own_packages_only():
    gate = threading.Event()
    items = [prefetch.Item("apt:base", ("jq",)), prefetch.Item("apt:driver", ("nvidia-smi",))]
    stream = FakeStream(["begin apt:base", "done apt:base 1 10", "begin apt:driver"], gate)
    notes = []
    fetcher = prefetch.Fetcher("box", stream, items, lambda t: None, notes.append)
    unrelated = fetcher.before("systemctl restart x", notes.append)
    assert unrelated == "systemctl restart x"  # nothing fetched for it: no wait, no link
    started = time.monotonic()
    threading.Timer(0.3, gate.set).start()
    command = fetcher.before(shell.apt_get("install", "jq"), notes.append)
    assert time.monotonic() - started >= 0.25  # it waited for the fetcher's base packages
    assert command.startswith("if [ -d /var/cache/provision/prefetch/archives ]")
    assert any("waiting for the fetcher to finish apt:base" in n for n in notes)
    fetcher.close()


def test_a_failed_fetch_is_left_to_the_step():
    items = [prefetch.Item("apt:base", ("jq",))]
    stream = FakeStream(["begin apt:base", "fail apt:base apt-get exit 100", "end"])
    fetcher = prefetch.Fetcher("box", stream, items, lambda t: None, lambda t: None)
    command = fetcher.before(shell.apt_get("install", "jq"), lambda t: None)
    assert command.endswith(shell.apt_get("install", "jq"))  # apt-get downloads it itself
    fetcher.thread.join(2)
    assert "not fetched (the step downloads it): apt:base" in fetcher.summary()


def gpu_settings(**driver_settings):
    from provision.steps import base, cuda, driver, pytorch

    return {
        "driver": driver.Settings(require_gpu=False, source="debian", **driver_settings),
        "cuda": cuda.Settings(),
        "pytorch": pytorch.Settings(),
        "base": base.Settings(),
    }


def test_the_driver_declares_debians_packages_and_the_components_that_enable_them():
    """On Debian with only `main` configured: the fetcher gets the non-free components file the
    driver step writes, and the driver packages its install change names."""
    from test_driver import host  # the apt state of a host with only `main`

    import declared as d
    from provision.steps import driver

    f = d.recorded("debian-12-nspawn.txt")
    s = gpu_settings()
    downloads = driver.downloads(d.context(driver.STEP, f, s, host(components="")))
    (source,) = [x for x in downloads if x.kind == "source"]
    assert source.dest == "/etc/apt/sources.list.d/provision-components.sources"
    assert "non-free" in source.content and "Types: deb" in source.content
    (apt,) = [x for x in downloads if x.kind == "apt"]
    assert {"nvidia-smi", "libcuda1", "firmware-misc-nonfree"} <= set(apt.names)
    changes = driver.check(d.context(driver.STEP, f, s, host(components="")))
    install = next(c.summary for c in changes if c.summary.startswith("install "))
    assert all(n in install for n in apt.names)
    nvidia = gpu_settings()
    nvidia["driver"] = dataclasses.replace(nvidia["driver"], source="nvidia")
    assert driver.downloads(d.context(driver.STEP, f, nvidia, host())) == []  # keyring first


def test_conda_declares_its_installer_where_its_download_looks_first():
    import declared as d
    from provision.steps import conda, users

    s = {"conda": conda.Settings(enabled=True), "users": users.Settings()}
    f = d.recorded("debian-12-nspawn.txt")
    missing = FakeRemote().on(r"conda", (127, "")).on(r"getent|test -e|stat", (1, ""))
    (file,) = conda.downloads(d.context(conda.STEP, f, s, missing))
    assert file.kind == "file" and file.url.startswith("https://github.com/conda-forge/")
    assert file.sha256 == conda.MINIFORGE_SHA256["x86_64"]
    assert file.dest == conda.cached_path(file.url)
    assert conda.download_command(file.url, file.dest).count(f"test -s {file.dest}") == 1
    there = FakeRemote().on(r"conda", "conda 26.3.2\n").on(r"getent|test -e|stat", (1, ""))
    assert conda.downloads(d.context(conda.STEP, f, s, there)) == []


def pytorch_context(remote, **p):
    """pytorch in a conda env (Python 3.11) from the user's index and find-links page."""
    import declared
    from provision.steps import conda, cuda, driver, pytorch, users

    f = dataclasses.replace(declared.recorded("debian-12-nspawn.txt"), user="tester")
    settings = {
        "pytorch": pytorch.Settings(**p),
        "conda": conda.Settings(enabled=True),
        "driver": driver.Settings(require_gpu=False),
        "cuda": cuda.Settings(),
        "users": users.Settings(),
    }
    return declared.context(pytorch.STEP, f, settings, remote)


def conda_env(answer):
    r = FakeRemote()
    r.on(r"stat -c %F -- /opt/provision/envs/dl", (1, ""))
    r.on(r"/bin/python -c .*importlib.metadata", answer)
    r.on(r"find /opt/conda/envs/dl", "")
    return r


TORCH = dict(python="3.11", index="cpu", version="2.13.0", packages=("torch",),
             index_url="https://u:t0ken@pypi.example/simple", find_links="http://127.0.0.1:9/",
             extra_index_url="https://mirror.example/simple")  # fmt: skip


def test_pytorch_declares_its_pip_installs_as_pip_downloads_for_the_env_python():
    from provision.steps import pytorch

    first, deps = pytorch.downloads(pytorch_context(conda_env((127, "")), **TORCH))
    cert = ("--cert", "/etc/ssl/certs/ca-certificates.crt")
    source = ("--index-url", TORCH["index_url"])
    links = ("--find-links", TORCH["find_links"])
    # The torch packages alone from the chosen index (no extra index), as the install's first
    # pip call; then the dependencies of the very wheels fetched, from every index.
    assert (first.kind, first.names) == ("wheels", ("torch==2.13.0+cpu",))  # the build pinned
    assert first.options == ("--no-deps", *source, *links, *cert) and not first.with_fetched
    assert deps.names == () and deps.with_fetched
    assert deps.options == (*source, "--extra-index-url", TORCH["extra_index_url"], *links, *cert)
    assert {first.python, deps.python} == {"3.11"}  # the conda env's, not the system python3's
    assert first.interpreter == "/opt/conda/bin/python"
    assert first.dest == "/opt/conda/envs/dl/bin/python -m pip install"
    # Already installed as asked: nothing to fetch.
    marker = {"index": "cpu", "requirements": ["torch==2.13.0"], "extra_packages": []}
    state = {"python": "3.11", "versions": {"torch": "2.13.0+cpu"}, "cuda": None, "error": "",
             "marker": marker, "build": "cpu"}  # fmt: skip
    import json

    assert pytorch.downloads(pytorch_context(conda_env(json.dumps(state)), **TORCH)) == []


def tensorboard_context(version_answer, **s):
    import declared
    from provision.steps import ssh, tensorboard

    f = dataclasses.replace(declared.recorded("debian-12-nspawn.txt"), user="tester")
    settings = {"tensorboard": tensorboard.Settings(**s), "ssh": ssh.Settings()}
    r = FakeRemote().on(r"import tensorboard", version_answer)
    r.on(r"getent passwd", "tester:x:1000:1000::/home/tester:/bin/sh\ntester\n@@logdir\n")
    r.on(r"systemctl|test -e|cat|stat", (1, ""))
    return declared.context(tensorboard.STEP, f, settings, r)


def test_tensorboard_declares_its_wheels_only_when_it_installs():
    from provision.steps import tensorboard

    found = tensorboard.downloads(tensorboard_context((1, ""), pip_index_url=TORCH["index_url"]))
    (wheels,) = [d for d in found if d.kind == "wheels"]
    assert wheels.names == ("pip", "tensorboard", "setuptools") and wheels.python == ""
    assert wheels.options == ("--cert", "/etc/ssl/certs/ca-certificates.crt", "--index-url",
                              TORCH["index_url"])  # fmt: skip
    assert wheels.dest == "/opt/provision/tensorboard/bin/pip install"
    assert wheels.dest in tensorboard.install_command(tensorboard.Settings())
    there = tensorboard_context("2.20.0\n")
    assert [d for d in tensorboard.downloads(there) if d.kind == "wheels"] == []


def wheels_item():
    calls = (
        Download("wheels", ("torch==2.13.0",), dest="/e/bin/python -m pip install",
                 options=("--no-deps", "--index-url", TORCH["index_url"]), python="3.11"),
        Download("wheels", (), dest="/e/bin/python -m pip install",
                 options=("--index-url", TORCH["index_url"]), python="3.11", with_fetched=True),
    )  # fmt: skip
    return prefetch.Item("wheels:pytorch", calls=calls)


def test_the_fetcher_script_runs_the_same_pip_calls_for_the_target_after_the_apt_groups():
    command = prefetch.fetch_command([prefetch.Item("apt:base", ("jq",)), wheels_item()], [])
    script = shlex.split(command)[2]
    assert script.index("begin apt:base") < script.index("begin wheels:pytorch")
    assert "python3 -m venv $P/venv" in script  # the fetcher's own throwaway venv
    assert "until pick /opt" not in script  # no conda python named: the venv only
    (first, deps) = [line for line in script.splitlines() if " -m pip download " in line]
    target = "--python-version $V --implementation cp --abi cp$(echo $V | tr -d .)"
    for line in (first, deps):
        assert "--only-binary=:all:" in line and target in line
        assert "TMPDIR=/var/tmp $py -m pip download" in line  # on disk, not a tmpfs /tmp
        assert "--dest /var/cache/provision/prefetch/wheels/pytorch.part" in line
    assert f"--no-deps --index-url {TORCH['index_url']} -- torch==2.13.0 >" in first
    assert f'--index-url {TORCH["index_url"]} -- "$@" ' in deps  # the wheels the first fetched
    assert "V=3.11;" in script
    assert "mv -- /var/cache/provision/prefetch/wheels/pytorch.part" in script
    assert "wheels/pytorch.part/simple/$n/index.html" in script  # a PEP 503 page per project
    assert "t0ken" not in shell.redact(command) and "t0ken" not in command.splitlines()[0]


def test_the_install_gains_find_links_only_once_its_wheels_are_fetched():
    install = shell.and_("/e/bin/python -m pip install --no-deps torch", "/e/bin/python -c x")
    # The folder's index comes last: pip takes the last source's file among equal candidates.
    index = "--extra-index-url file:///var/cache/provision/prefetch/wheels/pytorch/simple"
    for lines, expected in (
        (["begin wheels:pytorch", "done wheels:pytorch 3 1000", "end"], True),
        (["begin wheels:pytorch", "fail wheels:pytorch pip download exit 1", "end"], False),
    ):
        fetcher = prefetch.Fetcher("box", FakeStream(lines), [wheels_item()], print, print)
        command = fetcher.before(install, lambda t: None)
        assert (f"/e/bin/python -m pip install --no-deps torch {index} && " in command) is expected
        assert command.endswith("/e/bin/python -c x") and "cp -fl" not in command
        fetcher.thread.join(2)
        assert ("3 wheels" in fetcher.summary()) is expected
    logged = []
    pip_line = f"| Looking in indexes: {TORCH['index_url']}"
    prefetch.Fetcher("box", FakeStream([pip_line, "end"]), [], logged.append, print).thread.join(2)
    assert logged == ["# prefetch| Looking in indexes: https://u:***@pypi.example/simple"]
    unrelated = prefetch.Fetcher("box", FakeStream(["end"]), [wheels_item()], print, print)
    assert unrelated.before("/other/bin/pip install x", print) == "/other/bin/pip install x"
