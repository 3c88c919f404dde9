"""The CLI: list, config, and bad input → exit 2 with file:line, no connection opened."""

import pytest
from click.testing import CliRunner

from provision import local, remote
from provision.cli import cli


@pytest.fixture(autouse=True)
def no_connections(monkeypatch):
    """Any attempt to open a connection fails the test."""
    opened = []

    def refuse(self):
        opened.append(self.connection.host)
        raise AssertionError(f"a connection was opened to {self.connection.host}")

    monkeypatch.setattr(remote.SSHRemote, "open", refuse)
    monkeypatch.setattr(local.LocalRemote, "open", refuse)
    return opened


def invoke(args, inventory_text=None, tmp_path=None):
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):
        if inventory_text is not None:
            with open("inventory.ini", "w") as f:
                f.write(inventory_text)
        return runner.invoke(cli, args)


def test_cli_list_shows_steps_in_order():
    result = invoke(["list"])
    assert result.exit_code == 0
    assert result.output.splitlines()[0].startswith("base ")


def test_cli_config_shows_values_and_sources(tmp_path):
    result = invoke(["config", "--host", "box"], "[gpu]\nbox base.time_sync=false\n", tmp_path)
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "base.time_sync" in x)
    assert "False" in line and "inventory.ini:2" in line


BAD = [
    (["all", "--host", "box"], "[gpu]\nbox base.tim_sync=1\n", "inventory.ini:2"),
    (["all", "--host", "box"], "[gpu\nbox\n", "inventory.ini:1"),
    (["all", "--host", "nobox"], "[gpu]\nbox\n", "unknown host or group 'nobox'"),
    (
        ["all", "--host", "box", "--set", "base.packages=$(reboot)"],
        "[g]\nbox\n",
        "--set base.packages",
    ),
    (
        ["all", "--host", "box", "--detailed-exitcode"],
        "[g]\nbox\n",
        "--detailed-exitcode needs --plan",
    ),
    (["base", "--host", "box"], "[g]\nbox ansible_port=0\n", "inventory.ini:2"),
    (["verify", "--host", "box", "nosuchstep"], "[g]\nbox\n", "unknown step 'nosuchstep'"),
    (["facts", "--host", "box", "-i", "missing.ini"], None, "missing.ini not found"),
    (["all"], "[g]\nbox\n", "Missing option '--host'"),
    (["all", "--host", "box", "--parallel", "0"], "[g]\nbox\n", "--parallel"),
]


@pytest.mark.parametrize(("args", "inventory", "words"), BAD)
def test_cli_bad_input_exits_2_without_connecting(args, inventory, words, tmp_path, no_connections):
    result = invoke(args, inventory, tmp_path)
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert no_connections == []


def test_cli_error_has_a_hint_and_no_traceback(tmp_path):
    result = invoke(["all", "--host", "box"], "[g]\nbox base.time_sync=maybe\n", tmp_path)
    assert "error: inventory.ini:2: base.time_sync" in result.output
    assert "Traceback" not in result.output


# --- provision compat -------------------------------------------------------------------------


def test_compat_answers_for_a_card_and_an_os():
    from click.testing import CliRunner

    from provision.cli import cli

    result = CliRunner().invoke(
        cli, ["compat", "--gpu", "GeForce GTX 1080 Ti", "--os", "ubuntu-24.04"]
    )
    assert result.exit_code == 0, result.output
    assert "580, proprietary" in result.output and "cu126" in result.output
    assert "torch <= 2.14" in result.output


def test_compat_json_by_pci_id():
    import json

    from click.testing import CliRunner

    from provision.cli import cli

    result = CliRunner().invoke(
        cli, ["compat", "--gpu", "10de:2684", "--os", "debian-12", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["driver"]["branch"] == 580 and data["pytorch"]["index"] == "cu130"


def test_compat_refuses_an_impossible_request_with_exit_2():
    from click.testing import CliRunner

    from provision.cli import cli

    args = ["compat", "--gpu", "1b06", "--os", "ubuntu-24.04", "--index", "cu130"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "cu126" in result.output  # the hint names the index that works


def test_compat_unknown_card_asks_for_the_architecture():
    from click.testing import CliRunner

    from provision.cli import cli

    result = CliRunner().invoke(cli, ["compat", "--gpu", "10de:ffff", "--os", "debian-12"])
    assert result.exit_code == 2 and "--arch" in result.output
    ok = CliRunner().invoke(
        cli, ["compat", "--gpu", "10de:ffff", "--os", "debian-12", "--arch", "6.1"]
    )
    assert ok.exit_code == 0 and "cu126" in ok.output


def test_expose_relay_needs_the_relay_in_the_inventory(tmp_path):
    from click.testing import CliRunner

    from provision.cli import cli

    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "[gpu]\nbox ansible_host=192.0.2.10 expose.method=reverse-tunnel "
        "expose.relay=relay@198.51.100.7\n"
    )
    result = CliRunner().invoke(cli, ["expose-relay", "-i", str(inventory), "--host", "box"])
    assert result.exit_code == 2, result.output
    assert "is not a host in the inventory" in result.output


def test_over_hosts_connects_gathers_and_closes_each_host(tmp_path, monkeypatch, capsys):
    """The one connect/gather/close loop of facts, compat, verify and doctor (issue 17 §3)."""
    from types import SimpleNamespace

    from fakes import FakeRemote
    from provision import runner
    from provision.cli.hosts import over_hosts
    from provision.errors import ConnectError, StepError

    closed = []

    class Closing(FakeRemote):
        def close(self):
            closed.append(self.host)

    def connect(connection, **kwargs):
        if connection.host == "down":
            raise ConnectError("down: cannot connect to 192.0.2.9:22", "check the address")
        return Closing([(r"^.*gather facts", "")], host=connection.host, **kwargs)

    monkeypatch.setattr(remote, "connect", connect)
    monkeypatch.setattr(
        runner,
        "gather_facts",
        lambda r: (r.run("gather facts", sudo=False), f"facts of {r.host}")[1],
    )
    hosts = [
        SimpleNamespace(name=n, connection=remote.Connection(host=n, addr="192.0.2.9"))
        for n in ("down", "up", "broken")
    ]

    def use(hc, r, f):
        if hc.name == "broken":
            raise StepError("broken: the check failed")
        return f

    unreachable = []
    out = over_hosts(hosts, use, log_dir=tmp_path, unreachable=unreachable)
    assert out == {"up": "facts of up"}
    assert unreachable == ["down", "broken"]
    assert closed == ["up", "broken"]  # closed after use, also when use failed
    err = capsys.readouterr().err
    assert "down: cannot connect to 192.0.2.9:22" in err and "broken: the check failed" in err
    logs = {p.name.split("-")[0]: p.read_text() for p in tmp_path.glob("*.log")}
    assert sorted(logs) == ["broken", "down", "up"]
    assert "$ gather facts" in logs["up"] and "gather" not in logs["down"]
    # Without the list, the first failure is the command's error: no host after it is tried.
    closed.clear()
    with pytest.raises(ConnectError):
        over_hosts(hosts, use)
    assert closed == []


def test_over_hosts_in_parallel_reads_the_hosts_at_once_and_answers_in_inventory_order(
    tmp_path, monkeypatch, capsys
):
    """verify's hosts at the same time (--parallel): every host is in use together (a barrier
    only they pass at once), yet the results, the messages and the unreachable list come in
    inventory order, as they do one host after the other."""
    import threading
    from types import SimpleNamespace

    from fakes import FakeRemote
    from provision import runner
    from provision.cli.hosts import over_hosts
    from provision.errors import ConnectError, StepError

    def connect(connection, **kwargs):
        if connection.host == "down":
            raise ConnectError("down: cannot connect to 192.0.2.9:22", "check the address")
        return FakeRemote([(r"^.*gather facts", "")], host=connection.host, **kwargs)

    monkeypatch.setattr(remote, "connect", connect)
    monkeypatch.setattr(
        runner,
        "gather_facts",
        lambda r: (r.run("gather facts", sudo=False), f"facts of {r.host}")[1],
    )
    names = ("broken", "down", "b", "a")
    hosts = [
        SimpleNamespace(name=n, connection=remote.Connection(host=n, addr="192.0.2.9"))
        for n in names
    ]
    together = threading.Barrier(3, timeout=10)  # broken, b and a: fails unless at once

    def use(hc, r, f):
        together.wait()
        if hc.name == "broken":
            raise StepError("broken: the check failed")
        return f

    unreachable = []
    out = over_hosts(hosts, use, log_dir=tmp_path, unreachable=unreachable, parallel=8)
    assert list(out) == ["b", "a"] and out["a"] == "facts of a"
    assert unreachable == ["broken", "down"]
    err = capsys.readouterr().err
    assert err.index("broken: the check failed") < err.index("down: cannot connect")


def test_compat_host_asks_with_the_hosts_settings_and_the_flags_on_top(tmp_path, monkeypatch):
    """compat --host: the host's GPUs and OS from its facts, its driver/cuda/pytorch settings
    as the request (one place: provision.stack), a flag overriding a setting."""
    import json
    from pathlib import Path

    from fakes import FakeRemote

    recorded = (Path(__file__).parent.parent / "data/facts/ubuntu-22.04-gpu.txt").read_text()
    monkeypatch.setattr(remote, "connect", lambda *a, **k: FakeRemote([(r".", recorded)]))
    inventory = "[g]\nbox ansible_host=192.0.2.7 driver.branch=570 cuda.version=12.8\n"
    asked = invoke(["compat", "--host", "box", "--json"], inventory, tmp_path)
    assert asked.exit_code == 0, asked.output
    answer = json.loads(asked.output)["box"]
    assert answer["os"] == "ubuntu-22.04" and answer["gpus"][0]["device_id"] == "10de:1b06"
    assert answer["driver"]["branch"] == 570 and answer["cuda"] == "12.8"
    flagged = invoke(["compat", "--host", "box", "--json", "--branch", "580"], inventory, tmp_path)
    answer = json.loads(flagged.output)["box"]
    assert answer["driver"]["branch"] == 580 and answer["cuda"] == "12.8"
