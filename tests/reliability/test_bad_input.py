"""Bad input: every broken inventory, setting or flag is refused with exit 2, names where it
was written (file:line, or the flag), and opens no SSH connection.

Each corpus case runs through the real CLI in-process (click's CliRunner) with two tripwires:
the inventory points at a TCP listener on 127.0.0.1 that counts connections, and opening a
Remote or a paramiko client fails the test. A few cases also run as a subprocess
(`python3 -m provision`), where only the listener can tell. Control cases prove that both
tripwires do fire when the input is valid.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provision import shell
from provision.cli import cli
from provision.remote import Connection, connect
from provision.settings import CONTROL_RE

ROOT = Path(__file__).resolve().parents[2]
PLAN = ("all", "--plan", "--host", "box")

# Line 1 is [lab], line 2 the host `box` (pointing at the listener), extras from line 3 on.
HOST_LINE = "box ansible_host=127.0.0.1 ansible_port={port} ansible_user=root"


@dataclass(frozen=True)
class Case:
    """One broken input: what is written, how the CLI is called, what the error must say."""

    id: str
    where: str  # must appear in the output: "{inv}:3", "{toml}:2", "--set users.accounts"
    message: str  # must appear too (the reason)
    host_vars: str = ""  # appended to the host line (line 2)
    after: tuple[str, ...] = ()  # lines 3, 4, ...
    args: tuple[str, ...] = ()  # after the command (defaults: PLAN)
    command: tuple[str, ...] = PLAN
    inventory: str | None = None  # the whole inventory text instead of [lab] + host line
    toml: str | None = None  # written as provision.toml and passed with --config
    raw: bytes | None = None  # the inventory as bytes (encoding errors)


CORPUS = [
    # --- inventory syntax -------------------------------------------------------------------
    Case("section-unclosed", "{inv}:1", "bad section header", inventory="[lab\n" + HOST_LINE),
    Case("group-starts-with-digit", "{inv}:1", "bad group name", inventory="[1lab]\n" + HOST_LINE),
    Case("section-type-unknown", "{inv}:3", "unknown section type", after=("[lab:host]",)),
    Case("all-as-host-group", "{inv}:1", "only [all:vars]", inventory="[all]\n" + HOST_LINE),
    Case("quote-unclosed", "{inv}:2", "cannot split line", host_vars=' base.apt_mirror="http://m'),
    Case("token-not-key-value", "{inv}:2", "is not key=value", host_vars=" ansible_become"),
    Case("key-starts-with-digit", "{inv}:2", "is not a valid key", host_vars=" 9port=22"),
    Case("host-name-leading-dash", "{inv}:3", "bad host name", after=("-oProxyCommand=sh",)),
    Case("host-name-subst", "{inv}:3", "bad host name", after=("$(reboot) ansible_port=22",)),
    Case(
        "group-var-twice",
        "{inv}:5",
        "is set twice",
        after=("[lab:vars]", "base.time_sync=true", "base.time_sync=false"),
    ),
    Case(
        "host-var-differs-on-two-lines",
        "{inv}:4",
        "sets 'ansible_user'",
        after=("[other]", "box ansible_user=admin"),
    ),
    Case("children-unknown", "{inv}:3", "unknown group 'labb'", after=("[gpus:children]", "labb")),
    Case(
        "children-cycle",
        "contains itself",
        "",
        after=("[a:children]", "b", "[b:children]", "a"),
    ),
    Case("host-and-group-same-name", "{inv}:3", "both a host and a group", after=("[box]",)),
    Case("children-two-per-line", "{inv}:4", "bad child group", after=("[g:children]", "lab x")),
    Case(
        "vars-text-after-quote",
        "{inv}:4",
        "extra text after the quoted value",
        after=("[lab:vars]", 'base.apt_mirror="http://m" trailing'),
    ),
    Case("inventory-missing", "--inventory", "not found", inventory="<missing>"),
    Case("inventory-not-utf8", "--inventory", "cannot read inventory", raw=b"[lab]\nb\xffx\n"),
    # --- unknown keys -----------------------------------------------------------------------
    Case("host-var-typo", "{inv}:2", "did you mean 'ansible_host'", host_vars=" ansible_hots=h"),
    Case("var-without-step", "{inv}:2", "unknown variable 'time_sync'", host_vars=" time_sync=1"),
    Case("step-typo", "{inv}:2", "unknown step 'bsae'", host_vars=" bsae.time_sync=true"),
    Case("field-typo", "{inv}:2", "did you mean 'base.time_sync'", host_vars=" base.time_synk=1"),
    Case(
        "toml-field-typo",
        "{toml}:2",
        "unknown setting 'base.time_synk'",
        toml="[base]\ntime_synk = true\n",
    ),
    Case("toml-syntax", "{toml}:1", "fix the TOML syntax", toml="[base\n"),
    Case("toml-top-level-key", "{toml}:1", "is not a [step] table", toml="time_sync = true\n"),
    # --- wrong types and ranges -------------------------------------------------------------
    Case(
        "port-not-integer",
        "{inv}:4",
        "ansible_port: 'ssh' is not an integer",
        after=("[lab:vars]", "ansible_port=ssh"),
        inventory=None,
    ),
    Case(
        "port-out-of-range",
        "{inv}:3",
        "out of range",
        after=("other ansible_port=70000",),
        command=("all", "--plan", "--host", "other"),
    ),
    Case(
        "bool-not-boolean", "{inv}:2", "is not a boolean", host_vars=" provision_allow_reboot=maybe"
    ),
    Case("step-int-not-integer", "{inv}:2", "tensorboard.port", host_vars=" tensorboard.port=six"),
    Case("step-int-zero", "{inv}:2", "ssh.max_auth_tries", host_vars=" ssh.max_auth_tries=0"),
    Case(
        "timeout-zero",
        "{inv}:4",
        "must be greater than 0",
        after=("[lab:vars]", "provision_connect_timeout_s=0"),
    ),
    Case(
        "connection-unsupported",
        "{inv}:2",
        "'winrm' is not supported",
        host_vars=" ansible_connection=winrm",
    ),
    Case("mac-invalid", "{inv}:2", "is not a MAC address", host_vars=" provision_mac=zz:zz"),
    Case("choice-invalid", "{inv}:2", "driver.flavour", host_vars=" driver.flavour=closed"),
    Case("root-login-yes", "{inv}:2", "is not one of", host_vars=" ssh.permit_root_login=yes"),
    # --- addresses, prefixes, gateways ------------------------------------------------------
    Case(
        "address-octet-300",
        "{inv}:2",
        "network.address",
        host_vars=" network.interface=eth0 network.address=192.168.1.300/24",
    ),
    Case(
        "address-no-prefix",
        "{inv}:2",
        "needs a prefix length",
        host_vars=" network.interface=eth0 network.address=192.168.1.10",
    ),
    Case(
        "prefix-33",
        "{inv}:2",
        "is not an address/prefix",
        host_vars=" network.interface=eth0 network.address=10.0.0.1/33",
    ),
    Case(
        "gateway-outside-subnet",
        "{inv}:5",
        "is outside 192.168.1.0/24",
        after=("[lab:vars]", "network.interface=eth0", "network.gateway=10.0.0.1"),
        host_vars=" network.address=192.168.1.10/24",
    ),
    Case(
        "gateway-own-address",
        "--set network.gateway",
        "is the box's own address",
        host_vars=" network.interface=eth0 network.address=192.168.1.10/24",
        args=("--set", "network.gateway=192.168.1.10"),
    ),
    Case("gateway-not-ip", "{inv}:2", "is not an IP address", host_vars=" network.gateway=gw.lan"),
    Case(
        "dns-bad-item",
        "{inv}:2",
        "'8.8.8.999' is not an IP address",
        host_vars=" network.dns=1.1.1.1,8.8.8.999",
    ),
    Case(
        "interface-needs-address",
        "{inv}:2",
        "network.address is needed",
        host_vars=" network.interface=eth0",
    ),
    Case(
        "interface-name-hostile",
        "{inv}:2",
        "network interface name",
        host_vars=" 'network.interface=eth0;reboot'",
    ),
    Case(
        "ansible-host-subst",
        "{inv}:3",
        "is not a host name or IP address",
        after=("evil ansible_host=$(reboot)",),
        command=("all", "--plan", "--host", "evil"),
    ),
    Case(
        "ansible-host-leading-dash",
        "{inv}:3",
        "is not a host name or IP address",
        after=("evil ansible_host=-oProxyCommand=sh",),
        command=("all", "--plan", "--host", "evil"),
    ),
    Case(
        "ansible-user-backtick",
        "{inv}:3",
        "is not a user name",
        after=("evil 'ansible_user=`id`'",),
        command=("all", "--plan", "--host", "evil"),
    ),
    # --- hostile strings: user names (users.accounts) ---------------------------------------
    Case("user-subst", "{inv}:2", "users.accounts", host_vars=" users.accounts=$(id)"),
    Case("user-backtick", "{inv}:2", "users.accounts", host_vars=" 'users.accounts=`id`'"),
    Case("user-leading-dash", "{inv}:2", "users.accounts", host_vars=" users.accounts=-r"),
    Case("user-quote", "{inv}:2", "users.accounts", host_vars=' "users.accounts=o\'neil"'),
    Case("user-space", "{inv}:2", "users.accounts", host_vars=" 'users.accounts=bob smith'"),
    Case(
        "user-newline",
        "--set users.accounts",
        "contains a newline",
        args=("--set", "users.accounts=alice\nroot"),
    ),
    Case("user-too-long", "{inv}:2", "users.accounts", host_vars=" users.accounts=" + "a" * 33),
    Case(
        "group-subst",
        "--set users.groups",
        "not a valid user/group name",
        args=("--set", "users.groups=video,$(id)"),
    ),
    # --- hostile strings: paths -------------------------------------------------------------
    Case("logdir-relative", "{inv}:2", "tensorboard.logdir", host_vars=" tensorboard.logdir=runs"),
    Case(
        "logdir-leading-dash",
        "{inv}:2",
        "is not an absolute path",
        host_vars=" tensorboard.logdir=--help",
    ),
    Case(
        "logdir-newline",
        "--set tensorboard.logdir",
        "contains a newline",
        args=("--set", "tensorboard.logdir=/srv/runs\n/etc"),
    ),
    Case("conda-prefix-leading-dash", "{inv}:2", "conda.prefix", host_vars=" conda.prefix=-rf"),
    Case(
        "conda-prefix-newline",
        "--set conda.prefix",
        "contains a newline",
        args=("--set", "conda.prefix=/opt/conda\nrm -rf /"),
    ),
    Case("conda-prefix-subst", "{inv}:2", "conda.prefix", host_vars=" conda.prefix=$(id)/conda"),
    # --- hostile strings: package lists -----------------------------------------------------
    Case(
        "package-semicolon",
        "{inv}:2",
        "is not a Debian package name",
        host_vars=" 'base.extra_packages=vim;reboot'",
    ),
    Case(
        "package-subst",
        "{inv}:2",
        "is not a Debian package name",
        host_vars=" base.extra_packages=$(reboot)",
    ),
    Case(
        "package-backtick",
        "{inv}:2",
        "is not a Debian package name",
        host_vars=" 'base.extra_packages=vim,`id`'",
    ),
    Case(
        "package-leading-dash",
        "{inv}:2",
        "is not a Debian package name",
        host_vars=" base.extra_packages=-oAPT::Update::Pre-Invoke::=id",
    ),
    Case(
        "package-quote",
        "{inv}:2",
        "is not a Debian package name",
        host_vars=' "base.extra_packages=vim\'"',
    ),
    Case(
        "package-newline",
        "--set base.extra_packages",
        "contains a newline",
        args=("--set", "base.extra_packages=vim\nreboot"),
    ),
    Case(
        "package-empty-item",
        "{inv}:2",
        "has an empty item",
        host_vars=" base.extra_packages=vim,,git",
    ),
    Case(
        "conda-channel-newline",
        "--set conda.channels",
        "contains a newline",
        args=("--set", "conda.channels=conda-forge\nssl_verify: false"),
    ),
    Case(
        "toml-list-newline",
        "{toml}:2",
        "contains a newline",
        toml='[conda]\nchannels = ["conda-forge\\nssl_verify: false"]\n',
    ),
    Case(
        "tensorboard-user-carriage-return",
        "--set tensorboard.user",
        "contains a newline",
        args=("--set", "tensorboard.user=alice\r"),
    ),
    # --- hostile strings: URLs --------------------------------------------------------------
    Case(
        "url-subst", "{inv}:2", "pytorch.index_url", host_vars=" pytorch.index_url=https://m/$(id)"
    ),
    Case(
        "url-scheme-ftp",
        "{inv}:2",
        "pytorch.index_url",
        host_vars=" pytorch.index_url=ftp://m/simple",
    ),
    Case(
        "url-leading-dash",
        "{inv}:2",
        "pytorch.index_url",
        host_vars=" pytorch.index_url=--index-url=https://m",
    ),
    Case("url-backtick", "{inv}:2", "cuda.repo_url", host_vars=" 'cuda.repo_url=https://m/`id`'"),
    Case("url-quote", "{inv}:2", "cuda.repo_url", host_vars=' "cuda.repo_url=https://m/it\'s"'),
    Case("url-space", "{inv}:2", "cuda.repo_url", host_vars=" 'cuda.repo_url=https://m/a b'"),
    Case(
        "url-newline",
        "--set cuda.repo_url",
        "contains a newline",
        args=("--set", "cuda.repo_url=https://m/\nid"),
    ),
    # --- key files --------------------------------------------------------------------------
    Case(
        "key-file-missing",
        "{inv}:2",
        "key file /nonexistent/id_ed25519 not found",
        host_vars=" ansible_ssh_private_key_file=/nonexistent/id_ed25519",
    ),
    Case(
        "key-file-relative-missing",
        "{inv}:2",
        "keys/id not found",
        host_vars=" ansible_ssh_private_key_file=keys/id",
    ),
    # --- hosts and groups -------------------------------------------------------------------
    Case(
        "host-unknown",
        "--host",
        "unknown host or group 'boxx'",
        command=("all", "--plan", "--host", "boxx"),
    ),
    Case(
        "group-empty",
        "{inv}:3",
        "group 'empty' has no hosts",
        after=("[empty]",),
        command=("all", "--plan", "--host", "empty"),
    ),
    Case(
        "ad-hoc-port-range",
        "--host",
        "port 70000 out of range",
        command=("all", "--plan", "--host", "root@127.0.0.1:70000"),
    ),
    Case(
        "groups-disagree",
        "{inv}:8",
        "from group 'a'",
        after=(
            "[a]",
            "box",
            "[b]",
            "box",
            "[a:vars]",
            "base.apt_mirror=http://a/debian",
            "[b:vars]",
            "base.apt_mirror=http://b/debian",
        ),
    ),
    # --- flags ------------------------------------------------------------------------------
    Case(
        "set-without-equals", "--set", "is not step.field=value", args=("--set", "base.time_sync")
    ),
    Case(
        "set-connection-var",
        "--set ansible_port",
        "only step.field=value",
        args=("--set", "ansible_port=22"),
    ),
    Case(
        "set-unknown-step", "--set nosuch.x", "unknown step 'nosuch'", args=("--set", "nosuch.x=1")
    ),
    Case(
        "set-bad-bool",
        "--set base.time_sync",
        "is not a boolean",
        args=("--set", "base.time_sync=perhaps"),
    ),
    Case("step-command-unknown", "'bsae'", "No such command", command=("bsae", "--host", "box")),
    Case(
        "verify-step-unknown",
        "unknown step 'nosuch'",
        "`provision list` shows the steps",
        command=("verify", "--host", "box", "nosuch"),
    ),
    Case("parallel-zero", "'--parallel'", "0 is not in the range", args=("--parallel", "0")),
    Case(
        "detailed-exitcode-without-plan",
        "--detailed-exitcode",
        "needs --plan",
        command=("all", "--host", "box", "--detailed-exitcode"),
    ),
    Case("host-flag-missing", "'--host'", "Missing option", command=("all", "--plan")),
    Case(
        "conda-channel-subst",
        "--set conda.channels",
        "is not a conda channel name or URL",
        args=("--set", "conda.channels=conda-forge,$(id)"),
    ),
    Case(
        "conda-channel-dash",
        "{inv}:2",
        "is not a conda channel name or URL",
        host_vars=" conda.channels=-c",
    ),
    Case(
        "driver-branch-out-of-range",
        "--set driver.branch",
        "is not a driver branch",
        args=("--set", "driver.branch=99999"),
    ),
]
# --- issue 16: inputs first tried from outside ---------------------------------------------
EVIL = ("all", "--plan", "--host", "evil")
CORPUS += [
    Case(
        "group-vars-for-missing-group",
        "{inv}:3",
        "did you mean [lab:vars]",
        after=("[labs:vars]", "driver.branch=535"),
    ),
    Case(
        "ansible-host-octet-300",
        "{inv}:3",
        "'10.0.0.300' is not a valid IPv4 address",
        after=("evil ansible_host=10.0.0.300",),
        command=EVIL,
    ),
    Case(
        "ansible-host-octet-999",
        "{inv}:3",
        "'10.0.0.999' is not a valid IPv4 address",
        after=("evil ansible_host=10.0.0.999",),
        command=EVIL,
    ),
    Case(
        "ansible-host-three-numbers",
        "{inv}:3",
        "is not a valid IPv4 address",
        after=("evil ansible_host=10.1.2",),
        command=EVIL,
    ),
    Case(
        "host-name-is-bad-ip",
        "{inv}:3",
        "is not a valid IPv4 address",
        after=("10.0.0.300",),
        command=("all", "--plan", "--host", "10.0.0.300"),
    ),
    Case(
        "ad-hoc-octet-300",
        "--host me@10.0.0.300:22",
        "is not a valid IPv4 address",
        command=("all", "--plan", "--host", "me@10.0.0.300:22"),
    ),
    Case(
        "ansible-host-brackets-not-ipv6",
        "{inv}:3",
        "brackets are for an IPv6 address",
        after=("evil ansible_host=[box]",),
        command=EVIL,
    ),
    Case(
        "ansible-host-bad-ipv6",
        "{inv}:3",
        "is not an IPv6 address",
        after=("evil ansible_host=fe80::zz",),
        command=EVIL,
    ),
    Case(
        "ansible-host-label-dash",
        "{inv}:3",
        "is not a host name",
        after=("evil ansible_host=box-.lan",),
        command=EVIL,
    ),
    Case(
        "ssh-port-is-tensorboard-port",
        "{inv}:2",
        "two services cannot listen on one port",
        host_vars=" ssh.port=6006",
    ),
    Case(
        "tensorboard-port-is-ssh-port",
        "--set tensorboard.port",
        "is also ssh.port",
        args=("--set", "ssh.port=2222", "--set", "tensorboard.port=2222"),
    ),
    Case(
        "gateway-without-interface",
        "{inv}:2",
        "network.interface is not",
        host_vars=" network.gateway=192.168.1.1",
    ),
    Case(
        "address-without-interface",
        "{inv}:4",
        "network.interface is not",
        after=("[lab:vars]", "network.address=192.168.1.50/24"),
    ),
    Case("cuda-version-unknown", "{inv}:2", "unknown CUDA toolkit", host_vars=" cuda.version=99.9"),
    Case(
        "pytorch-index-unknown",
        "--set pytorch.index",
        "unknown wheel index",
        args=("--set", "pytorch.index=cu999"),
    ),
    Case(
        "branch-and-index-never-together",
        "--set pytorch.index",
        "cannot go together",
        args=("--set", "driver.branch=535", "--set", "pytorch.index=cu130"),
    ),
    Case(
        "logdir-backslash-n",
        "{inv}:2",
        "contains a backslash",
        host_vars=" 'tensorboard.logdir=/data\\nrm -rf /'",
    ),
    Case(
        "tensorboard-python-space",
        "--set tensorboard.python",
        "contains whitespace",
        args=("--set", "tensorboard.python=/opt/my env/bin/python"),
    ),
    Case(
        "conda-installer-plain-http-unverified",
        "{inv}:2",
        "conda.installer_url",
        host_vars=" conda.installer_url=http://m/Miniforge3.sh",
    ),
    Case(
        "branch-banana-has-example",
        "{inv}:2",
        "is not an integer; e.g. driver.branch=580",
        host_vars=" driver.branch=banana",
    ),
    Case(
        "port-word-has-example",
        "{inv}:2",
        "e.g. tensorboard.port=6006",
        host_vars=" tensorboard.port=six",
    ),
    Case("become-pass", "{inv}:2", "--ask-sudo-pass", host_vars=" ansible_become_pass=secret"),
    Case("ssh-pass", "{inv}:2", "never a password", host_vars=" ansible_ssh_pass=secret"),
    Case(
        "key-file-is-directory",
        "{inv}:2",
        "is a directory, not a key file",
        host_vars=" ansible_ssh_private_key_file=/tmp",
    ),
]
assert len({c.id for c in CORPUS}) == len(CORPUS), "corpus ids must be unique"


def materialise(case: Case, tmp_path: Path, port: int) -> tuple[list[str], dict[str, str]]:
    """Write the case's files; the argv after `provision`, and the {inv}/{toml} names."""
    inv = tmp_path / "inventory.ini"
    if case.raw is not None:
        inv.write_bytes(case.raw)
    elif case.inventory == "<missing>":
        inv = tmp_path / "no-such-inventory.ini"
    else:
        text = case.inventory or "\n".join(["[lab]", HOST_LINE + case.host_vars, *case.after])
        inv.write_text(text.format(port=port) + "\n")
    names = {"inv": str(inv), "toml": ""}
    extra = ["-i", str(inv), "--log-dir", str(tmp_path / "logs")]
    if case.toml is not None:
        toml = tmp_path / "provision.toml"
        toml.write_text(case.toml)
        names["toml"] = str(toml)
        extra += ["--config", str(toml)]
    command = list(case.command)
    # The shared options go right after the subcommand's name.
    argv = [command[0], *extra, *command[1:], *case.args]
    return argv, names


def run_in_process(argv: list[str], tmp_path: Path, monkeypatch) -> tuple[int, str]:
    monkeypatch.chdir(tmp_path)  # no ./inventory.ini or ./provision.toml of the repo
    monkeypatch.delenv("PROVISION_SUDO_PASSWORD", raising=False)
    result = CliRunner().invoke(cli, argv)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def assert_clear(case: Case, code: int, output: str, names: dict[str, str]) -> None:
    where = case.where.format(**names)
    assert code == 2, f"exit {code}, wanted 2:\n{output}"
    assert where in output, f"{where!r} not named:\n{output}"
    assert case.message in output, f"{case.message!r} not said:\n{output}"
    assert "Traceback" not in output
    assert_has_fix(output)


def assert_has_fix(output: str) -> None:
    """A refusal says how to fix it: a non-empty hint (ours) or click's usage pointer."""
    hints = [line.split("hint:", 1)[1].strip() for line in output.splitlines() if "hint:" in line]
    assert any(hints) or "Try '" in output, f"no fix offered:\n{output}"
    assert all(hints), f"an empty hint:\n{output}"


@pytest.mark.reliability("bad_input")
@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_bad_input_is_refused_before_any_connection(
    case, tmp_path, monkeypatch, listener, tripwire, resolver
):
    argv, names = materialise(case, tmp_path, listener.port)
    code, output = run_in_process(argv, tmp_path, monkeypatch)
    assert_clear(case, code, output, names)
    assert tripwire == [], f"connection attempted: {tripwire}"
    assert resolver == [], f"DNS lookup made: {resolver}"
    assert listener.accepted == 0


def test_control_valid_input_trips_the_in_process_tripwire(
    tmp_path, monkeypatch, listener, tripwire
):
    """Without this, 'no connection' could pass because nothing ever tries to connect."""
    control = Case("control", "", "")
    argv, _names = materialise(control, tmp_path, listener.port)
    code, output = run_in_process(argv, tmp_path, monkeypatch)
    assert tripwire == ["box"], output
    assert code == 1


# --- the same through a real process: only the listener can see a connection --------------

SUBPROCESS_CASES = [
    "quote-unclosed",
    "host-var-typo",
    "gateway-outside-subnet",
    "user-subst",
    "package-leading-dash",
    "url-backtick",
    "key-file-missing",
    "groups-disagree",
    "set-unknown-step",
    "parallel-zero",
    "group-vars-for-missing-group",
    "ad-hoc-octet-300",
    "ssh-port-is-tensorboard-port",
    "cuda-version-unknown",
]


def run_subprocess(argv: list[str], cwd: Path, env: dict | None = None, timeout: int = 60):
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    environ.pop("PROVISION_SUDO_PASSWORD", None)
    return subprocess.run(
        [sys.executable, "-m", "provision", *argv],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.reliability("bad_input")
@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_bad_input_subprocess_opens_no_connection(case_id, tmp_path, listener):
    case = next(c for c in CORPUS if c.id == case_id)
    argv, names = materialise(case, tmp_path, listener.port)
    proc = run_subprocess(argv, tmp_path)
    assert_clear(case, proc.returncode, proc.stdout + proc.stderr, names)
    assert listener.accepted == 0, "the CLI connected although the input was bad"


def test_control_valid_input_reaches_the_listener(tmp_path, listener):
    """The listener does see the CLI's connection when the input is valid."""
    argv, _names = materialise(Case("control", "", ""), tmp_path, listener.port)
    proc = run_subprocess(argv, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert listener.accepted >= 1
    assert "cannot connect" in proc.stdout + proc.stderr


def test_gpu_choice_that_some_host_can_take_goes_on_to_connect(tmp_path, listener):
    """driver.branch=535 is legal on Debian 12 and on Ubuntu but not for a Blackwell card: only
    the host's facts decide, so validation lets it through and the CLI connects (exit 1 here,
    the listener is no sshd), with no usage error (exit 2) claimed. What no host could take
    (535 with cu130) is refused offline: the corpus' branch-and-index-never-together."""
    argv, _names = materialise(
        Case("gpu", "", "", args=("--set", "driver.branch=535")), tmp_path, listener.port
    )
    proc = run_subprocess(argv, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert listener.accepted >= 1


# --- legal but hostile values are quoted: what arrives on the host is exactly the value ----

HOSTILE_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
) | st.sampled_from(
    [
        "it's",
        'say "hi"',
        "$(touch /tmp/provision-pwned)",
        "`touch /tmp/provision-pwned`",
        "line\nbreak",
        "-n",
        "--help",
        "; rm -rf /nonexistent",
        "ünïcödé ✓ 日本",
        "\\",
        "*",
        "",
    ]
)


def round_trip(remote, value: str, dest: Path, sudo: bool) -> bytes:
    """`printf %s VALUE > dest` through the remote; the bytes that landed."""
    remote.run(shell.cmd("printf", "%s", value) + " > " + shell.cmd(str(dest)), sudo=sudo)
    return dest.read_bytes()


@pytest.mark.reliability("bad_input")
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=HOSTILE_TEXT)
def test_hostile_value_arrives_unchanged_locally(value, tmp_path):
    """ansible_connection=local: the value goes through shell.cmd and `sh -c` unchanged."""
    remote = connect(Connection(host="local", addr="localhost", local=True))
    dest = tmp_path / "value"
    assert round_trip(remote, value, dest, sudo=False) == value.encode()
    assert not Path("/tmp/provision-pwned").exists()


@pytest.fixture(scope="module")
def ssh_remote(sshd):
    """One SSH connection to the throw-away sshd, reused by every example."""
    conn = Connection(
        host="loopback",
        addr="127.0.0.1",
        port=sshd["port"],
        user="root",
        key_file=str(sshd["key"]),
        known_hosts=str(sshd["known_hosts"]),
    )
    remote = connect(conn)
    yield remote
    remote.close()


@pytest.mark.reliability("bad_input")
# About 0.4 s per command over SSH (Fabric): 30 examples, 60 commands.
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=HOSTILE_TEXT)
def test_hostile_value_arrives_unchanged_over_ssh(value, ssh_remote, tmp_path):
    """Over real SSH (the integration tier's throw-away sshd) through the `sh -c` wrapper, and
    through `sudo ... sh -c` too where this machine has sudo."""
    ssh_remote.is_root = True
    assert round_trip(ssh_remote, value, tmp_path / "plain", sudo=False) == value.encode()
    if shutil.which("sudo"):
        ssh_remote.is_root = False  # force the sudo wrapper (root's sudo needs no password)
        try:
            assert round_trip(ssh_remote, value, tmp_path / "sudo", sudo=True) == value.encode()
        finally:
            ssh_remote.is_root = True
    assert not Path("/tmp/provision-pwned").exists()


@pytest.mark.reliability("bad_input")
@settings(max_examples=100, deadline=None)
@given(
    # Backslashes and surrounding whitespace are refused (no unit file keeps them as is).
    logdir=st.builds(
        lambda s: "/" + s,
        HOSTILE_TEXT.filter(
            lambda v: not CONTROL_RE.search(v) and "\\" not in v and v == v.rstrip()
        ),
    ),
    comment=HOSTILE_TEXT.filter(lambda v: not CONTROL_RE.search(v) and "," not in v),
)
def test_hostile_legal_settings_are_accepted_unchanged(logdir, comment):
    """Values the validators allow (a logdir with quotes, $() and spaces; a key comment with
    backticks) reach the step's Settings byte for byte: nothing is stripped or re-parsed."""
    from provision import config, inventory

    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    inv = inventory.parse("[lab]\nbox ansible_host=127.0.0.1\n")
    overrides = [f"tensorboard.logdir={logdir}"]
    if comment.strip() == comment and comment:
        overrides.append(f"users.authorized_keys={key} {comment}")
    (hc,) = config.load_hosts(inv, ["box"], overrides=overrides)
    assert hc.settings["tensorboard"].logdir == logdir
    if len(overrides) == 2:
        assert hc.settings["users"].authorized_keys == (f"{key} {comment}",)


# --- the schema, generated: every field of every step and every connection variable ---------


def _schema_cases() -> list[Case]:
    """For each field: a value of the wrong type, a control character, and (for numbers and
    booleans, which have no empty form) the empty value. What a field must refuse is known from
    its type alone, not from its validator: "abc" is no integer, a newline no part of any value."""
    import dataclasses as dc

    from provision import config
    from provision.settings import field_types

    cases = []
    for group in config.setting_groups():
        types = field_types(group.settings)
        for f in dc.fields(group.settings):
            key = f"{group.key}.{f.name}"
            kind = types[f.name]
            bad = {"newline": "a\nb", "control": "/a\x01b", "escape": "x\x1b[31m"}
            if kind is int:
                bad |= {"word": "abc", "empty": "", "float": "1.5"}
            elif kind is bool:
                bad |= {"word": "maybe", "empty": ""}
            for what, value in bad.items():
                cases.append(
                    Case(
                        f"schema-{key}-{what}",
                        f"--set {key}",
                        key.split(".")[0],
                        args=("--set", f"{key}={value}"),
                    )
                )
    for key, kind in config.HOST_VARS.items():
        bad = {"control": "a\x01b", "empty": "''"}
        if kind is int:
            bad |= {"word": "abc"}
        elif kind is bool:
            bad |= {"word": "maybe"}
        for what, value in bad.items():
            cases.append(
                Case(
                    f"schema-{key}-{what}",
                    "{inv}:3",
                    key,
                    after=(f"evil ansible_host=127.0.0.1 {key}={value}",)
                    if key != "ansible_host"
                    else (f"evil {key}={value}",),
                    command=EVIL,
                )
            )
    return cases


SCHEMA = _schema_cases()


@pytest.mark.reliability("bad_input")
@pytest.mark.parametrize("case", SCHEMA, ids=[c.id for c in SCHEMA])
def test_schema_bad_value_is_refused_before_any_connection(
    case, tmp_path, monkeypatch, listener, tripwire, resolver
):
    """Exit 2, the place, a fix, and no connection and no DNS lookup: all four, or it fails."""
    argv, names = materialise(case, tmp_path, listener.port)
    code, output = run_in_process(argv, tmp_path, monkeypatch)
    assert_clear(case, code, output, names)
    assert tripwire == [] and resolver == [] and listener.accepted == 0


def test_control_resolver_tripwire_sees_a_name_lookup(tmp_path, monkeypatch, listener, resolver):
    """A valid host given by name does reach the resolver: the DNS tripwire can fire."""
    inv = tmp_path / "inventory.ini"
    inv.write_text(f"[lab]\nbox ansible_host=box.invalid ansible_port={listener.port}\n")
    code, output = run_in_process(
        ["all", "-i", str(inv), "--log-dir", str(tmp_path / "logs"), "--plan", "--host", "box"],
        tmp_path,
        monkeypatch,
    )
    assert code == 1, output
    assert "box.invalid" in resolver


# --- issue 16: the cases that are not a refusal of one value --------------------------------


def _config_output(tmp_path, monkeypatch, inventory: bytes, *args: str) -> tuple[int, str]:
    inv = tmp_path / "inventory.ini"
    inv.write_bytes(inventory)
    return run_in_process(["config", "-i", str(inv), "--host", "box", *args], tmp_path, monkeypatch)


@pytest.mark.reliability("bad_input")
def test_utf8_bom_inventory_and_toml_work(tmp_path, monkeypatch):
    """Windows editors save UTF-8 with a byte-order mark; the file is still valid."""
    (tmp_path / "provision.toml").write_bytes(b"\xef\xbb\xbf[base]\ntime_sync = false\n")
    code, output = _config_output(
        tmp_path, monkeypatch, b"\xef\xbb\xbf[gpu]\nbox ansible_host=127.0.0.1\n"
    )
    assert code == 0, output
    assert "base.time_sync" in output and "provision.toml" in output


@pytest.mark.reliability("bad_input")
def test_default_toml_syntax_error_names_the_file_not_the_flag(tmp_path, monkeypatch):
    (tmp_path / "provision.toml").write_text("[base\n")
    code, output = _config_output(tmp_path, monkeypatch, b"[gpu]\nbox ansible_host=127.0.0.1\n")
    assert code == 2
    assert "provision.toml:1" in output and "--config" not in output
    assert_has_fix(output)


@pytest.mark.reliability("bad_input")
def test_set_error_names_the_key_once(tmp_path, monkeypatch):
    code, output = _config_output(
        tmp_path, monkeypatch, b"[gpu]\nbox\n", "--set", "driver.branch=banana"
    )
    assert code == 2
    assert output.splitlines()[0].count("driver.branch") == 2, output  # the flag + the example


@pytest.mark.reliability("bad_input")
def test_private_key_readable_by_others_is_refused_like_openssh(
    tmp_path, monkeypatch, listener, tripwire, resolver
):
    """OpenSSH: "UNPROTECTED PRIVATE KEY FILE! ... Permissions 0644 ... are too open"."""
    key = tmp_path / "id_ed25519"
    key.write_text("not used\n")
    key.chmod(0o644)
    inv = f"[lab]\nbox ansible_host=127.0.0.1 ansible_port={listener.port} "
    code, output = _config_output(
        tmp_path, monkeypatch, (inv + f"ansible_ssh_private_key_file={key}\n").encode()
    )
    assert code == 2, output
    assert "UNPROTECTED PRIVATE KEY FILE" in output and f"chmod 600 {key}" in output
    assert "inventory.ini:2" in output
    assert tripwire == [] and resolver == [] and listener.accepted == 0
    key.chmod(0o600)
    code, output = _config_output(
        tmp_path, monkeypatch, (inv + f"ansible_ssh_private_key_file={key}\n").encode()
    )
    assert code == 0, output


@pytest.mark.reliability("bad_input")
@pytest.mark.parametrize(
    "setting",
    [
        "pytorch.index_url=http://mirror.lan/simple",
        "pytorch.find_links=http://mirror.lan/wheels",
        "base.apt_mirror=http://mirror.lan/debian",
        "conda.channels=http://mirror.lan/conda-forge",
    ],
)
def test_plain_http_index_is_warned_about(setting, tmp_path, monkeypatch):
    code, output = _config_output(
        tmp_path, monkeypatch, b"[gpu]\nbox ansible_host=127.0.0.1\n", "--set", setting
    )
    assert code == 0, output
    key = setting.split("=")[0]
    assert f"warning: --set {key}: {key} = http://" in output and "use https" in output


@pytest.mark.reliability("bad_input")
def test_ipv6_in_brackets_is_accepted_as_on_the_command_line(tmp_path, monkeypatch):
    code, output = _config_output(tmp_path, monkeypatch, b"[gpu]\nbox ansible_host=[::1]\n")
    assert code == 0, output


@pytest.mark.reliability("bad_input")
def test_unit_file_escapes_systemd_specifiers_and_quotes_the_argument():
    """systemd.unit(5): "%%" is a literal "%"; systemd.service(5): a double-quoted word keeps
    spaces, and "$$" is a literal "$" in ExecStart=."""
    from provision.templates import render

    unit = render(
        "tensorboard/provision-tensorboard.service.j2",
        logdir="/srv/100% runs/$HOME",
        user="alice",
        group="alice",
        tensorboard="/opt/tb/bin/tensorboard",
        port=6006,
        bind_all=False,
    ).decode()
    assert "WorkingDirectory=/srv/100%% runs/$HOME\n" in unit
    assert '--logdir "/srv/100%% runs/$$HOME" --port 6006' in unit


class NotSsh:
    """A TCP server that answers like a web server (one HTTP status line), then closes."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()


@pytest.mark.reliability("bad_input")
def test_port_that_is_not_ssh_gives_one_line_and_no_traceback(tmp_path):
    server = NotSsh()
    try:
        inv = tmp_path / "inventory.ini"
        inv.write_text(f"[lab]\nbox ansible_host=127.0.0.1 ansible_port={server.port}\n")
        argv = ["all", "-i", str(inv), "--log-dir", str(tmp_path / "logs"), "--plan"]
        proc = run_subprocess([*argv, "--host", "box"], tmp_path)
    finally:
        server.sock.close()
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output and "paramiko" not in output, output
    assert "cannot connect" in output
