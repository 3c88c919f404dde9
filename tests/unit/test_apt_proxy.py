"""The lab's cache (provision/aptproxy.py through base): the apt proxy drop-in and pip.conf as
rendered, the refused values (exit 2, file:line or flag, nothing sent), the order of the
planned commands (the drop-in before the first apt-get update), the unreachable-proxy check,
the removal when a setting is unset, and the cache box."""

from __future__ import annotations

import configparser
import dataclasses
import subprocess

import pytest
from click.testing import CliRunner

import declared
from fakes import FakeRemote
from provision import aptproxy, config, local, remote
from provision.changes import Run, Upload
from provision.cli import cli
from provision.steps import base

DROP_IN = "/etc/apt/apt.conf.d/99provision-proxy"
PROXY = "http://10.0.0.5:3142"


def fresh_facts(**changes):
    """A Debian 12 container whose essentials are missing and whose lists are stale."""
    f = declared.recorded("debian-12-docker.txt")
    pkgs = {n: p for n, p in f.packages.items() if n not in base.ESSENTIALS}
    return dataclasses.replace(f, packages=pkgs, apt_stamp=None, dpkg_audit="", **changes)


def plan(f=None, ours="", **settings):
    """base's changes on a host where no managed file is there (the ones in `ours` are ours)."""
    r = FakeRemote().on(r"grep -lF", ours).on(r"stat -c", (1, "")).on(r"head -c", "")
    r.on(r"systemctl show", "UnitFileState=enabled\nActiveState=active\n")
    s = base.Settings(**settings)
    return base.check(declared.context(base.STEP, f or fresh_facts(), {"base": s}, r))


def actions(changes):
    return [a for c in changes for a in c.actions]


def upload(changes, dest):
    (found,) = [a for a in actions(changes) if isinstance(a, Upload) and a.dest == dest]
    return found.content.decode()


def apt_config_dump(text: str, tmp_path) -> str:
    """What apt itself makes of a drop-in: `apt-config dump` with only that file read (this
    machine is Debian: its apt-config is the one the hosts run)."""
    conf = tmp_path / "apt.conf"
    conf.write_text(text)
    empty = tmp_path / "empty.d"
    empty.mkdir(exist_ok=True)
    env = {"APT_CONFIG": str(conf), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        ["apt-config", "-o", f"Dir::Etc::parts={empty}", "dump", "Acquire"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return out.stdout


def test_drop_in_is_what_apt_reads_as_the_proxy_with_https_direct(tmp_path):
    text = upload(plan(apt_proxy=PROXY), DROP_IN)
    dump = apt_config_dump(text, tmp_path)
    assert f'Acquire::http::Proxy "{PROXY}";' in dump.splitlines()
    assert 'Acquire::https::Proxy "DIRECT";' in dump.splitlines()


def test_https_proxy_is_written_when_set(tmp_path):
    text = upload(plan(apt_proxy=PROXY, apt_proxy_https="http://10.0.0.6:3128"), DROP_IN)
    assert 'Acquire::https::Proxy "http://10.0.0.6:3128";' in apt_config_dump(text, tmp_path)


def test_drop_in_lands_before_the_first_apt_get_update():
    steps = actions(plan(apt_proxy=PROXY))
    drop_in = next(i for i, a in enumerate(steps) if isinstance(a, Upload) and a.dest == DROP_IN)
    runs = [(i, a) for i, a in enumerate(steps) if isinstance(a, Run)]
    update = next(i for i, a in runs if " update --error-on=any" in a.command)
    assert drop_in < update
    # and the proxy is checked from the host right before apt runs
    check = next(i for i, a in runs if "/dev/tcp/10.0.0.5/3142" in a.command)
    assert drop_in < check < update


def test_the_proxy_check_names_the_proxy_when_nothing_answers():
    """The check's command run here against a port nothing listens on (a closed one of this
    machine): it fails and says which proxy and what to do."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        proxy = f"http://127.0.0.1:{port}"
        probe = aptproxy.probe(proxy)
        out = subprocess.run(["sh", "-c", probe.command], capture_output=True, text=True)
    assert out.returncode == 1
    assert f"base.apt_proxy {proxy} does not answer" in out.stderr
    assert "systemctl start apt-cacher-ng" in out.stderr


def test_the_proxy_check_passes_when_the_proxy_listens():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        probe = aptproxy.probe(f"http://127.0.0.1:{sock.getsockname()[1]}")
        out = subprocess.run(["sh", "-c", probe.command], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_no_proxy_means_no_drop_in_and_no_check():
    steps = actions(plan())
    assert not [a for a in steps if isinstance(a, Upload) and a.dest == DROP_IN]
    assert not [a for a in steps if isinstance(a, Run) and "/dev/tcp/" in a.command]


def test_unsetting_the_proxy_moves_our_drop_in_aside():
    summaries = [c.summary for c in plan(ours=DROP_IN + "\n")]
    assert f"move {DROP_IN} to /var/backups/provision{DROP_IN} (base.apt_proxy is unset)" in (
        summaries
    )


def test_unsetting_the_index_leaves_a_pip_conf_of_the_users_own():
    assert not [c for c in plan() if "pip.conf" in c.summary]
    assert [c for c in plan(ours="/etc/pip.conf\n") if "/etc/pip.conf" in c.summary]


@pytest.mark.parametrize(
    ("index", "trusted"),
    [
        ("http://10.0.0.5:3141/root/pypi/+simple/", "10.0.0.5:3141"),
        ("https://pypi.lab.example/simple", None),
    ],
)
def test_pip_conf_sets_the_index_and_trusts_only_an_http_one(index, trusted):
    parser = configparser.ConfigParser()  # pip reads its config files with configparser
    parser.read_string(upload(plan(pip_index_url=index), "/etc/pip.conf"))
    assert parser.get("global", "index-url") == index
    assert parser.get("global", "trusted-host", fallback=None) == trusted


def test_cache_box_gets_apt_cacher_ng_and_its_addresses():
    changes = plan(apt_cache_server=True, apt_cache_bind=("127.0.0.1", "10.0.0.5"))
    install = next(c for c in changes if c.summary.startswith("install"))
    assert "apt-cacher-ng" in install.summary
    conf = upload(changes, aptproxy.ACNG_CONF)
    assert "BindAddress: 127.0.0.1 10.0.0.5" in conf.splitlines()
    assert "Port: 3142" in conf.splitlines()


def test_cache_box_with_a_proxy_of_its_own_is_refused():
    from provision.errors import ProvisionError

    with pytest.raises(ProvisionError) as info:
        plan(apt_cache_server=True, apt_proxy=PROXY)
    assert "base.apt_proxy=" in info.value.hint


@pytest.fixture
def no_connections(monkeypatch):
    opened = []

    def refuse(self):
        opened.append(self.connection.host)
        raise AssertionError(f"a connection was opened to {self.connection.host}")

    monkeypatch.setattr(remote.SSHRemote, "open", refuse)
    monkeypatch.setattr(local.LocalRemote, "open", refuse)
    return opened


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("inventory", "https://10.0.0.5:3142"),  # apt-cacher-ng speaks http
        ("inventory", "10.0.0.5:3142"),
        ("inventory", "http://10.0.0.5:3142/$(reboot)"),
        ("flag", "http://cache;reboot"),
    ],
)
def test_bad_proxy_exits_2_naming_where_the_value_and_the_fix(
    where, value, tmp_path, monkeypatch, no_connections
):
    monkeypatch.chdir(tmp_path)
    line = "box ansible_host=10.9.9.9"
    args = ["base", "--host", "box"]
    if where == "inventory":
        line += f" base.apt_proxy='{value}'"
        at = "inventory.ini:2: base.apt_proxy: "
    else:
        args += ["--set", f"base.apt_proxy={value}"]
        at = "--set base.apt_proxy: "
    (tmp_path / "inventory.ini").write_text(f"[g]\n{line}\n")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert at in result.output
    assert repr(value) in result.output
    assert "e.g. http://10.0.0.5:3142" in result.output
    assert no_connections == []


@pytest.mark.parametrize(
    "value", ["http://10.0.0.5:3142", "http://cache.lab", "http://[fd00::5]:3142/"]
)
def test_good_proxies_are_accepted(value):
    aptproxy.proxy_url(value)  # raises ValueError on a bad one
    settings, sources = config.build_settings([config.parse_set([f"base.apt_proxy={value}"])])
    assert settings["base"].apt_proxy == value  # kept as written, not dropped or defaulted
    assert sources["base.apt_proxy"] == "--set base.apt_proxy"


def test_verify_reads_the_effective_value_from_apt_config():
    class Host:
        def __init__(self, dump):
            self.dump = dump

        def check_output(self, command):
            key = command.split()[-1]
            return "\n".join(x for x in self.dump.splitlines() if x.startswith(key + " "))

    s = base.Settings(apt_proxy=PROXY)
    good = f'Acquire::http::Proxy "{PROXY}";\nAcquire::https::Proxy "DIRECT";\n'
    aptproxy.verify_lab_cache(Host(good), s)
    # another file sorting later in apt.conf.d won: apt's answer is what counts
    with pytest.raises(AssertionError, match="http://other:3128"):
        aptproxy.verify_lab_cache(Host(good.replace(PROXY, "http://other:3128")), s)


def test_pip_installs_without_their_own_index_use_pip_conf_and_torch_keeps_its_index():
    """What goes through the lab's index: a pip call with no --index-url of its own (pip then
    reads /etc/pip.conf). TensorBoard's install and pytorch's extras pass none unless their
    own setting is set; torch itself keeps pytorch.index's index."""
    from provision.steps import pytorch, pytorch_install, tensorboard

    assert "--index-url" not in tensorboard.install_command(tensorboard.Settings())
    s = pytorch.Settings(extra_packages=("jupyterlab",))
    env = pytorch_install.Layout("/opt/env", "/opt/env", "", "", ())
    command = pytorch_install.install_command(s, env, "cpu", ["torch"], uninstall_first=False)
    installs = [c for c in command.split(" && ") if " pip install " in c]
    torch_call, deps_call, extras_call = installs
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_call
    assert "--index-url https://download.pytorch.org/whl/cpu" in deps_call
    assert "jupyterlab" in extras_call and "--index-url" not in extras_call
