"""`provision tunnel` refuses a taken local port naming its owner; `ssh-config` keeps port
forwards out of the plain `Host` entry (issue 13 §9). Real sockets on 127.0.0.1, no SSH."""

import os
import socket

from click.testing import CliRunner

from provision import localport, sshconfig
from provision.cli import cli

INV = "[g]\nbox ansible_host=10.0.0.5 ansible_user=me ansible_port=2200\n"

# /proc/net/tcp as Linux prints it: 127.0.0.1:6006 (0x1776) listening (st 0A), uid 1000,
# inode 424242; the same port in another state and another port listening.
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1776 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 424242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1776 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000  1000        0 424243 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
"""


def test_listeners_from_proc_net_tcp():
    assert localport.listeners(PROC_NET_TCP, 6006) == [(424242, 1000)]
    assert localport.listeners(PROC_NET_TCP, 22) == [(1111, 0)]
    assert localport.listeners(PROC_NET_TCP, 8080) == []


def listening():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


def test_a_taken_port_is_named_with_its_owner_and_a_free_one_is_free():
    with listening() as s:
        port = s.getsockname()[1]
        busy = localport.bind_error(port)
        assert busy.startswith(f"127.0.0.1:{port} is in use by pid {os.getpid()} ("), busy
    assert localport.bind_error(port) == ""


def test_tunnel_refuses_a_taken_local_port_before_connecting(tmp_path):
    runner = CliRunner()
    with listening() as s, runner.isolated_filesystem(temp_dir=tmp_path):
        port = s.getsockname()[1]
        with open("inventory.ini", "w") as f:
            f.write(INV)  # 10.0.0.5 is never reached: the refusal comes first
        result = runner.invoke(cli, ["tunnel", "--host", "box", "--port", "6006",
                                     "--local-port", str(port)])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"cannot open the tunnel: 127.0.0.1:{port} is in use by pid {os.getpid()}" in (
        result.output
    )
    assert "--local-port" in result.output and "is at http" not in result.output


def test_ssh_config_keeps_forwards_out_of_the_plain_entry(tmp_path):
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):
        with open("inventory.ini", "w") as f:
            f.write(INV)
        result = runner.invoke(cli, ["ssh-config", "--host", "box"])
    assert result.exit_code == 0, result.output
    plain, _, tunnel = result.output.partition("Host box-tunnel\n")
    assert "Host box\n    HostName 10.0.0.5\n    User me\n    Port 2200\n" in plain
    assert "LocalForward" not in plain
    assert tunnel.startswith("    HostName 10.0.0.5\n    User me\n    Port 2200\n")
    assert (
        "    LocalForward 127.0.0.1:6006 127.0.0.1:6006\n    ExitOnForwardFailure yes\n" in tunnel
    )
    start, end = sshconfig.markers("box")
    assert result.output.startswith(start) and result.output.rstrip().endswith(end)


# --- the services come from the steps (Step.services), not from the CLI (issue 17 §5) ---------


def declaring(monkeypatch, services_by_step):
    """Every step declares exactly the services given here (by step name), none otherwise."""
    import dataclasses

    from provision.cli import forward
    from provision.steps import STEPS

    steps = tuple(
        dataclasses.replace(s, services=tuple(services_by_step.get(s.name, ()))) for s in STEPS
    )
    monkeypatch.setattr(forward, "STEPS", steps)


def refuse_to_connect(monkeypatch):
    """A test that reached the network would hang on 10.0.0.5: fail at once instead."""
    from provision import remote

    def refuse(self):
        raise AssertionError("tried to connect")

    monkeypatch.setattr(remote.SSHRemote, "open", refuse)


def invoke(tmp_path, args):
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):
        with open("inventory.ini", "w") as f:
            f.write(INV)
        return runner.invoke(cli, args)


def test_ssh_config_forwards_what_the_steps_declare(tmp_path, monkeypatch):
    # ssh.port is a port setting like any other: declared as a service, it is forwarded, and
    # TensorBoard's port, no longer declared, is not.
    declaring(monkeypatch, {"ssh": [("sshd", "port")]})
    result = invoke(tmp_path, ["ssh-config", "--host", "box", "--set", "ssh.port=2222"])
    assert result.exit_code == 0, result.output
    assert "    LocalForward 127.0.0.1:2222 127.0.0.1:2222\n" in result.output
    assert "6006" not in result.output


def test_ssh_config_leaves_out_the_services_of_a_disabled_step(tmp_path):
    on = invoke(tmp_path, ["ssh-config", "--host", "box", "--set", "tensorboard.port=7007"])
    assert "    LocalForward 127.0.0.1:7007 127.0.0.1:7007\n" in on.output, on.output
    off = invoke(tmp_path, ["ssh-config", "--host", "box", "--set", "tensorboard.enabled=false"])
    assert off.exit_code == 0, off.output
    assert "LocalForward" not in off.output and "Host box-tunnel" not in off.output


def test_tunnel_opens_the_declared_service_port_by_default(tmp_path):
    # the bind check runs on the port the tunnel would open: the service's setting
    with listening() as s:
        port = s.getsockname()[1]
        result = invoke(tmp_path, ["tunnel", "--host", "box", "--set", f"tensorboard.port={port}"])
    assert result.exit_code == 2, result.output
    assert f"cannot open the tunnel: 127.0.0.1:{port} is in use" in result.output


def test_tunnel_with_no_declared_service_asks_for_a_port(tmp_path, monkeypatch):
    declaring(monkeypatch, {})
    refuse_to_connect(monkeypatch)
    result = invoke(tmp_path, ["tunnel", "--host", "box"])
    assert result.exit_code == 2, result.output
    assert "box: no service to forward" in result.output and "--port" in result.output


def test_tunnel_local_port_is_for_one_forward(tmp_path, monkeypatch):
    declaring(monkeypatch, {"ssh": [("sshd", "port")], "tensorboard": [("tensorboard", "port")]})
    refuse_to_connect(monkeypatch)
    result = invoke(tmp_path, ["tunnel", "--host", "box", "--local-port", "9000"])
    assert result.exit_code == 2, result.output
    assert "--local-port is for one forward, not 2 (sshd, tensorboard)" in result.output


def test_tunnel_forwards_each_declared_service_of_the_enabled_steps(monkeypatch):
    from types import SimpleNamespace

    from provision.cli.forward import tunnel_forwards

    declaring(monkeypatch, {"ssh": [("sshd", "port")], "tensorboard": [("tensorboard", "port")]})
    settings = {"ssh": SimpleNamespace(port=2222), "tensorboard": SimpleNamespace(port=6007)}
    assert tunnel_forwards("box", settings, None, None) == [(2222, 2222), (6007, 6007)]
    settings["tensorboard"].enabled = False
    assert tunnel_forwards("box", settings, None, None) == [(2222, 2222)]
    # --port wins over the declared services; --local-port moves it here
    assert tunnel_forwards("box", settings, 8888, 9999) == [(9999, 8888)]
    # every declaring step off: still their ports (a service the user runs by hand)
    settings["ssh"].enabled = False
    assert tunnel_forwards("box", settings, None, None) == [(2222, 2222), (6007, 6007)]


# --- tunnel SERVICE|PORT ...: pick what to forward (issue 20) ---------------------------------


def forwarding(monkeypatch):
    """A stand-in for the SSH connection (and for Ctrl-C at the wait): the list it returns
    gets the (port here, port on the box) of each forward the tunnel opens."""
    import contextlib
    import time

    from provision import remote

    opened = []

    class Box:
        @contextlib.contextmanager
        def forward_local(self, local, there, on_failure=None):
            opened.append((local, there))
            yield []

        def close(self):
            pass

    def ctrl_c(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(remote, "connect", lambda connection, **kwargs: Box())
    monkeypatch.setattr(localport, "bind_error", lambda port: "")  # every port here is free
    monkeypatch.setattr(time, "sleep", ctrl_c)
    return opened


PORTS = ["--set", "tensorboard.port=7007", "--set", "jupyter.port=9999"]
JUPYTER_ON = ["--set", "jupyter.enabled=true"]


def test_tunnel_forwards_the_one_service_named(tmp_path, monkeypatch):
    opened = forwarding(monkeypatch)
    result = invoke(tmp_path, ["tunnel", "--host", "box", "jupyter", *PORTS, *JUPYTER_ON])
    assert result.exit_code == 0, result.output
    assert opened == [(9999, 9999)]  # TensorBoard's step is on, but not named: not forwarded
    assert "box: 127.0.0.1:9999 is at http://127.0.0.1:9999/" in result.stderr
    assert "off" not in result.stderr


def test_tunnel_forwards_two_services_in_the_order_named(tmp_path, monkeypatch):
    opened = forwarding(monkeypatch)
    result = invoke(
        tmp_path, ["tunnel", "-H", "box", "jupyter", "tensorboard", *PORTS, *JUPYTER_ON]
    )
    assert result.exit_code == 0, result.output
    assert opened == [(9999, 9999), (7007, 7007)]
    opened.clear()
    result = invoke(
        tmp_path, ["tunnel", "-H", "box", "tensorboard", "jupyter", *PORTS, *JUPYTER_ON]
    )
    assert result.exit_code == 0, result.output
    assert opened == [(7007, 7007), (9999, 9999)]


def test_tunnel_forwards_a_port_number_to_the_same_port_here(tmp_path, monkeypatch):
    opened = forwarding(monkeypatch)
    result = invoke(tmp_path, ["tunnel", "--host", "box", "8080", *PORTS])
    assert result.exit_code == 0, result.output
    assert opened == [(8080, 8080)]
    opened.clear()
    # one forward: --local-port moves it here
    result = invoke(tmp_path, ["tunnel", "--host", "box", "8080", "--local-port", "9000"])
    assert result.exit_code == 0, result.output
    assert opened == [(9000, 8080)]
    assert "box: 127.0.0.1:8080 is at http://127.0.0.1:9000/" in result.stderr


def test_tunnel_forwards_a_service_and_a_port(tmp_path, monkeypatch):
    opened = forwarding(monkeypatch)
    result = invoke(tmp_path, ["tunnel", "--host", "box", "tensorboard", "8080", *PORTS])
    assert result.exit_code == 0, result.output
    assert opened == [(7007, 7007), (8080, 8080)]


def test_tunnel_forwards_a_named_service_of_a_step_that_is_off_with_a_note(tmp_path, monkeypatch):
    opened = forwarding(monkeypatch)
    off = ["--set", "jupyter.enabled=false"]
    result = invoke(tmp_path, ["tunnel", "--host", "box", "jupyter", *PORTS, *off])
    assert result.exit_code == 0, result.output
    assert opened == [(9999, 9999)]  # the user may run JupyterLab by hand
    notes = [line for line in result.stderr.splitlines() if "is at http" not in line]
    assert len(notes) == 1, result.stderr
    assert "box:" in notes[0] and "jupyter" in notes[0] and "off" in notes[0], notes
    assert "jupyter.enabled=false" in notes[0] and "9999" in notes[0], notes


def test_tunnel_drops_a_forward_named_twice_keeping_the_order(tmp_path, monkeypatch):
    opened = forwarding(monkeypatch)
    # --port and the arguments together: --port first, each port on the box once (7007 is
    # TensorBoard's port here, named as a service and as a number)
    args = ["tunnel", "-H", "box", "--port", "8080", "tensorboard", "8080", "7007", "tensorboard"]
    result = invoke(tmp_path, [*args, *PORTS])
    assert result.exit_code == 0, result.output
    assert opened == [(8080, 8080), (7007, 7007)]
    opened.clear()
    # one forward left after the duplicates go: --local-port is allowed
    args = ["tunnel", "-H", "box", "tensorboard", "7007", "--port", "7007", "--local-port", "9000"]
    result = invoke(tmp_path, [*args, *PORTS])
    assert result.exit_code == 0, result.output
    assert opened == [(9000, 7007)]


def test_tunnel_local_port_is_refused_for_two_named_forwards(tmp_path, monkeypatch):
    opened = forwarding(monkeypatch)
    args = ["tunnel", "--host", "box", "tensorboard", "8080", "--local-port", "9000", *PORTS]
    result = invoke(tmp_path, args)
    assert result.exit_code == 2, result.output
    assert "--local-port is for one forward, not 2 (tensorboard, 8080)" in result.output
    assert opened == []


def refuse_to_resolve(monkeypatch):
    """A test that looked a name up in DNS would fail here."""

    def refuse(*args, **kwargs):
        raise AssertionError("tried a DNS lookup")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "gethostbyname", refuse)


def test_tunnel_refuses_an_unknown_service_naming_the_closest_before_connecting(
    tmp_path, monkeypatch
):
    refuse_to_connect(monkeypatch)
    refuse_to_resolve(monkeypatch)
    # an ad hoc host by name: only a DNS lookup or a connection could go further
    result = invoke(tmp_path, ["tunnel", "--host", "me@gpu.example.org", "tensorbord"])
    assert result.exit_code == 2, result.output
    assert "SERVICE|PORT argument" in result.output and "'tensorbord'" in result.output
    assert "tensorboard, jupyter" in result.output  # the services the steps declare
    assert "did you mean tensorboard?" in result.output
    assert "is at http" not in result.output


def test_tunnel_service_names_are_the_declared_ones(tmp_path, monkeypatch):
    declaring(monkeypatch, {"ssh": [("sshd", "port")], "tensorboard": [("tensorboard", "port")]})
    refuse_to_connect(monkeypatch)
    result = invoke(tmp_path, ["tunnel", "--host", "box", "jupyter"])  # not declared here
    assert result.exit_code == 2, result.output
    assert "'jupyter'" in result.output and "sshd, tensorboard" in result.output
    result = invoke(tmp_path, ["tunnel", "--host", "box", "ssdh"])
    assert result.exit_code == 2, result.output
    assert "did you mean sshd?" in result.output


def test_tunnel_refuses_a_port_number_out_of_range(tmp_path, monkeypatch):
    refuse_to_connect(monkeypatch)
    refuse_to_resolve(monkeypatch)
    for value in ("0", "70000"):
        result = invoke(tmp_path, ["tunnel", "--host", "box", "tensorboard", value])
        assert result.exit_code == 2, (value, result.output)
        assert f"{value} is not a port number (1-65535)" in result.output, result.output
        assert "tensorboard, jupyter" in result.output
        assert "is at http" not in result.output
