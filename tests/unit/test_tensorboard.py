"""tensorboard.check as a table: own venv, logdir, unit file, ufw only with bind_all."""

import dataclasses
from pathlib import Path

from fakes import FakeRemote
from provision.facts import parse_facts
from provision.step import Context
from provision.steps import ssh, tensorboard
from provision.templates import render, sha256

DATA = Path(__file__).parent.parent / "data" / "facts"
UNIT_VARS = {
    "user": "tester",
    "group": "tester",
    "logdir": "/home/tester/runs",
    "port": 6006,
    "bind_all": False,
    "tensorboard": "/opt/provision/tensorboard/bin/tensorboard",
}


def check(remote, tb=None, ssh_settings=None):
    f = parse_facts((DATA / "debian-12-nspawn.txt").read_text())
    f = dataclasses.replace(f, user="tester")
    settings = {"tensorboard": tb or tensorboard.Settings(), "ssh": ssh_settings or ssh.Settings()}
    return tensorboard.check(
        Context("box", f, settings, lambda c, sudo: remote.probe(c, sudo=sudo))
    )


def base_remote():
    return FakeRemote().on(
        r"getent passwd tester && id -gn tester",
        "tester:x:1000:1000::/home/tester:/bin/bash\ntester\n",
    )


def test_tensorboard_fresh_host_gets_venv_logdir_unit_and_service():
    r = base_remote().on(r"import tensorboard", (1, "")).on(r"-- /home/tester/runs", (1, ""))
    r.on(r"sha256sum -- /etc/systemd", (1, "")).on(
        r"systemctl show", "UnitFileState=\nActiveState=inactive\n"
    )
    summaries = [c.summary for c in check(r)]
    assert summaries == [
        "install TensorBoard into /opt/provision/tensorboard",
        "create /home/tester/runs for tester",
        "write /etc/systemd/system/provision-tensorboard.service",
        "enable provision-tensorboard.service at boot",
        "start provision-tensorboard.service",
    ]
    unit = check(r)[2].actions[0].content.decode()
    assert "--host 127.0.0.1" in unit and "--bind_all" not in unit and "User=tester" in unit


def converged(bind_all=False):
    r = (
        base_remote()
        .on(r"import tensorboard", "2.18.0\n")
        .on(r"-- /home/tester/runs", "tester tester\n")
    )
    digest = sha256(
        render(
            "tensorboard/provision-tensorboard.service.j2", **{**UNIT_VARS, "bind_all": bind_all}
        )
    )
    r.on(r"sha256sum -- /etc/systemd", f"644 root root\n{digest}  x\n")
    return r.on(r"systemctl show", "UnitFileState=enabled\nActiveState=active\n")


def test_tensorboard_converged_has_no_changes():
    assert check(converged()) == []


def test_tensorboard_bind_all_opens_the_port_only_with_ufw():
    tb = tensorboard.Settings(bind_all=True)
    assert check(converged(True), tb) == []
    r = converged(True).on(r"ufw status", "Status: active\n22/tcp ALLOW Anywhere\n")
    (change,) = check(r, tb, ssh.Settings(ufw=True))
    assert change.summary == "allow TensorBoard (6006/tcp) in ufw (tensorboard.bind_all)"
