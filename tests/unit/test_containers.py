"""containers.check as a table, and daemon.json's merge (provision/dockerjson.py).

Expectations come from Docker's daemon.json reference (docs.docker.com/reference/cli/dockerd/
#daemon-configuration-file): one JSON object; `log-opts` values are strings, max-file too
("must be provided as strings"); max-size/max-file are options of the json-file and local
drivers only (the logging driver docs). The host-side read script runs in the real shell here.
"""

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from fakes import FakeRemote
from provision import dockerjson
from provision.changes import Restart, Run, Upload
from provision.errors import ProvisionError
from provision.facts import parse_facts
from provision.step import Context
from provision.steps import base, containers, users

DATA = Path(__file__).parent.parent / "data" / "facts"
USERS = {
    "registry-mirrors": ["https://mirror.example.org"],
    "log-opts": {"labels": "team"},
    "insecure-registries": ["10.0.0.5:5000"],
}


def context(remote, s, facts_file="debian-12-nspawn.txt") -> Context:
    f = dataclasses.replace(parse_facts((DATA / facts_file).read_text()), user="tester")
    settings = {
        "containers": s,
        "users": users.Settings(accounts=("alice",)),
        "base": base.Settings(),
    }
    ctx = Context("box", f, settings, gathered={}, strict=True)
    return dataclasses.replace(ctx, gathered=remote.read_all(containers.STEP.reads(ctx), f.user))


def config_answer(saved: bool, text: str | None) -> str:
    """What the host prints for config_read: computed by running the step's own script in
    the real shell against files in a temporary folder (below), or written out here."""
    head = "@@saved\n" if saved else "@@none\n"
    return head + ("" if text is None else "@@present\n" + text)


def host(saved=False, text=None, active=False, image=False, members="") -> FakeRemote:
    r = FakeRemote()
    r.on(r"daemon.json.before-provision", config_answer(saved, text))
    r.on(r"sha256sum -- /etc/docker/daemon.json", (1, "") if text is None else "")
    r.on(r"systemctl show .* docker.service",
         "UnitFileState=enabled\nActiveState=active\n" if active
         else "UnitFileState=\nActiveState=inactive\n")  # fmt: skip
    r.on(r"docker image inspect", "sha256:abc\n" if image else (1, ""))
    r.on(r"getent group docker", f"docker:x:998:{members}\n" if members != "-" else (2, ""))
    return r


def test_a_fresh_host_gets_docker_rotation_the_check_image_and_no_group():
    changes = containers.check(context(host(), containers.Settings(enabled=True)))
    summaries = [c.summary for c in changes]
    assert summaries[0] == "install 2 packages: docker.io, apparmor"
    assert summaries[1].startswith("keep a copy of daemon.json as it is")
    assert summaries[2] == (
        "set log-opts in /etc/docker/daemon.json (the other keys stay; restarts docker)"
    )
    assert summaries[3:] == [
        "enable docker.service at boot",
        "start docker.service",
        "make the local check image provision-check:dash (the host's /bin/sh; no registry)",
    ]
    upload = next(a for a in changes[2].actions if isinstance(a, Upload))
    assert json.loads(upload.content) == {"log-opts": {"max-size": "10m", "max-file": "3"}}
    assert Restart("docker.service") in changes[2].actions
    assert "--validate" in upload.validate and "{path}" in upload.validate


def test_the_users_keys_stay_and_only_ours_change():
    text = json.dumps(USERS, indent=4)
    s = containers.Settings(enabled=True, data_root="/data/docker")
    changes = containers.check(context(host(saved=True, text=text, active=True, image=True), s))
    assert [c.summary for c in changes] == [
        "install 2 packages: docker.io, apparmor",
        "set log-opts.max-size, log-opts.max-file, data-root in /etc/docker/daemon.json "
        "(the other keys stay; restarts docker)",
    ]
    written = json.loads(changes[1].actions[0].content)
    assert written == {
        "registry-mirrors": ["https://mirror.example.org"],
        "log-opts": {"labels": "team", "max-size": "10m", "max-file": "3"},
        "insecure-registries": ["10.0.0.5:5000"],
        "data-root": "/data/docker",
    }
    assert list(written) == [*USERS, "data-root"]  # the user's order, ours after


def test_a_file_that_already_holds_our_keys_is_left_as_written():
    # Another layout of the same object is not rewritten: the user's formatting stays.
    text = '{"log-opts":{"max-file":"3","max-size":"10m"},\n"debug":true}'
    r = host(saved=True, text=text, active=True, image=True)
    summaries = [c.summary for c in containers.check(context(r, containers.Settings(True)))]
    assert summaries == ["install 2 packages: docker.io, apparmor"]  # not in these facts


@pytest.mark.parametrize("driver", ["journald", "syslog", "none"])
def test_rotation_is_not_forced_on_a_driver_that_has_no_such_options(driver):
    text = json.dumps({"log-driver": driver})
    r = host(saved=True, text=text, active=True, image=True)
    summaries = [c.summary for c in containers.check(context(r, containers.Settings(True)))]
    assert not any("daemon.json" in s for s in summaries), summaries


def test_docker_users_join_the_group_with_the_warning():
    s = containers.Settings(enabled=True, docker_users=("alice", "bob"))
    r = host(saved=True, text='{"log-opts": {"max-size": "10m", "max-file": "3"}}',
             active=True, image=True, members="bob")  # fmt: skip
    change = containers.check(context(r, s))[-1]
    assert change.summary.startswith("add alice to group docker (root-equivalent")
    assert change.actions == (Run("usermod -aG docker -- alice"),)


def test_a_broken_daemon_json_is_refused_with_line_and_column():
    r = host(saved=True, text='{\n  "debug": true,\n}\n', active=True, image=True)
    with pytest.raises(ProvisionError, match=r"/etc/docker/daemon\.json:3:1: not valid JSON"):
        containers.check(context(r, containers.Settings(enabled=True)))
    with pytest.raises(ProvisionError, match="holds a JSON list, not an object"):
        dockerjson.parse("[1]")


def test_the_config_read_script_in_the_real_shell(tmp_path):
    conf, orig = tmp_path / "daemon.json", tmp_path / "orig"
    script = containers.config_read().command.replace(dockerjson.PATH, str(conf))
    script = script.replace(dockerjson.ORIGINAL, str(orig))

    def run() -> str:
        return subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout

    assert run() == config_answer(False, None)
    conf.write_text('{"a": 1}\n@@present\n')  # a line like the mark inside the file
    orig.write_text("{}\n")
    assert run() == config_answer(True, '{"a": 1}\n@@present\n')
    # The file's own "@@present" line is content, so JSON refuses it ("Extra data").
    r = FakeRemote().on(r"daemon.json.before-provision", run())
    with pytest.raises(ProvisionError, match="Extra data"):
        containers.current_config(context(r, containers.Settings(enabled=True)))
    conf.write_text('{"a": 1}\n')
    r = FakeRemote().on(r"daemon.json.before-provision", run())
    ctx = context(r, containers.Settings(enabled=True))
    assert containers.current_config(ctx) == (True, True, {"a": 1})


def test_kept_names_the_users_keys_that_are_gone():
    owned = {"log-opts": {"max-size": "10m", "max-file": "3"}, "data-root": "/d"}
    current = {"log-opts": {"max-size": "10m", "max-file": "3"}, "data-root": "/d"}
    assert dockerjson.kept(USERS, current, owned) == [
        "registry-mirrors",
        "log-opts.labels",
        "insecure-registries",
    ]
    assert dockerjson.kept(USERS, dockerjson.merge(USERS, owned), owned) == []


@pytest.mark.parametrize(
    "assignments, message",
    [
        (["containers.engine=lxc"], "is not a container engine"),
        (["containers.log_max_size=10MB"], "is not a log size"),
        (["containers.log_max_file=0"], "is not a number of log files"),
        (["containers.data_root=docker"], "absolute"),
        (["containers.podman_users=alice"], "rootless accounts need containers.engine = podman"),
        (["containers.engine=podman", "containers.docker_users=alice"],
         "Podman has no docker group"),
        (["containers.engine=podman", "containers.data_root=/data"], "not built for Podman"),
        (["containers.engine=podman", "containers.nvidia_default_runtime=true"],
         "Podman takes GPUs through CDI only"),
        (["containers.podman_users=root;x"], "containers.podman_users"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_before_connecting(assignments, message, tmp_path):
    from click.testing import CliRunner

    from provision.cli import cli

    inv = tmp_path / "inventory.ini"
    inv.write_text("[lab]\nbox ansible_host=192.0.2.1\n")
    sets = [arg for a in assignments for arg in ("--set", a)]
    result = CliRunner().invoke(
        cli, ["containers", "--host", "box", "-i", str(inv), "--plan", *sets]
    )
    assert result.exit_code == 2, result.output
    assert "--set" in result.output and message in result.output, result.output
