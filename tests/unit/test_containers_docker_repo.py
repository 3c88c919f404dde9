"""containers.docker_repo: Docker Engine from Docker's own apt repository (docker-ce).

Expectations come from Docker's install guide (docs.docker.com/engine/install/debian, /ubuntu:
the key at `https://download.docker.com/linux/<distro>/gpg`, the line `deb [signed-by=...]
https://download.docker.com/linux/<distro> <codename> stable`, the packages docker-ce,
docker-ce-cli, containerd.io, docker-buildx-plugin, docker-compose-plugin, and "Uninstall old
versions": docker.io, docker-doc, docker-compose, podman-docker, containerd, runc), the
fingerprint the guide printed (9DC8 5822 9FC7 DD38 854A E2D8 8D81 803C 0EBF CD88), and Docker's
version strings (`5:27.3.1-1~debian.12~bookworm`). The last test runs the real apt against a
FIXTURE repository in Docker's layout (tests/hosts/dockerrepo.py), served on loopback.
"""

import dataclasses
import subprocess
from pathlib import Path

import aptrepo
import dockerrepo
import pytest
from pkgindex import serve

from fakes import FakeRemote
from provision import config, signedrepo
from provision.errors import ConfigError
from provision.facts import parse_facts
from provision.facts.host import Package
from provision.step import Context
from provision.steps import base, containers, users
from provision.steps import containers_docker_repo as docker_own
from provision.steps import containers_toolkit as toolkit
from provision.templates import render

DATA = Path(__file__).parent.parent / "data" / "facts"
DEBIAN_MAIN = (
    "http://deb.debian.org/debian/\tbookworm\tmain\t/etc/apt/sources.list.d/debian.sources:1"
)
GUIDE_LINE = (
    "deb [signed-by=/etc/apt/keyrings/docker.gpg] https://download.docker.com/linux/debian "
    "bookworm stable"
)

TEMPLATE_EXAMPLES = {
    "containers/docker.list.j2": {
        "name": "Docker's apt repository",
        "keyring": docker_own.KEYRING,
        "uri": "https://download.docker.com/linux/debian",
        "suite": "bookworm",
        "components": "stable",
    },
}


def answers(version="5:27.3.1-1~debian.12~bookworm", package="docker-ce") -> FakeRemote:
    r = FakeRemote()
    r.on(r"daemon.json.before-provision", "@@none\n")
    r.on(r"sha256sum -- ", (1, ""))
    r.on(r"stat -c .*--", (1, ""))
    r.on(r"systemctl show .* docker.service", "UnitFileState=enabled\nActiveState=active\n")
    r.on(r"docker image inspect", "sha256:abc\n")
    state = ["@@targets", DEBIAN_MAIN, "@@fetched", "@@keyring", "@@keyring-data"]
    r.on(r"apt-get indextargets", "\n".join([*state, "@@apt-key", "@@end", ""]))
    r.on(r"echo @@key; if", "@@key\n")
    r.on(rf"dpkg-query -W -f=.*{package}", f"@@candidate\n{version}\n")
    r.on(r"for n in /dev/nvidia", "")
    r.on(r"cdi/nvidia.yaml", (1, ""))
    return r


def context(remote, s, facts="debian-12-nspawn.txt", installed=()) -> Context:
    f = dataclasses.replace(parse_facts((DATA / facts).read_text()), user="t")
    extra = {name: Package("1", "ii") for name in installed}
    f = dataclasses.replace(f, packages={**f.packages, **extra})
    settings = {"containers": s, "users": users.Settings(), "base": base.Settings()}
    ctx = Context("box", f, settings, gathered={}, strict=True)
    return dataclasses.replace(ctx, gathered=remote.read_all(containers.STEP.reads(ctx), f.user))


def uploaded(changes, dest) -> str:
    return next(
        a.content.decode() for c in changes for a in c.actions if getattr(a, "dest", "") == dest
    )


def test_debian_12_with_docker_io_gets_dockers_repository_and_packages_in_the_guides_order():
    s = containers.Settings(enabled=True, docker_repo=True)
    changes = containers.check(context(answers(), s, installed=("docker.io", "containerd", "runc")))
    summaries = [c.summary for c in changes]
    key = summaries.index(
        "install the key 0EBFCD88 of Docker's apt repository in /etc/apt/keyrings/docker.gpg "
        "(it holds no key), from https://download.docker.com/linux/debian/gpg"
    )
    assert GUIDE_LINE in uploaded(changes, "/etc/apt/sources.list.d/docker.list").splitlines()
    removal = next(i for i, t in enumerate(summaries) if t.startswith("remove "))
    assert summaries[removal].startswith("remove docker.io, containerd, runc (they conflict")
    assert "/var/lib/docker stay" in summaries[removal]
    assert " remove docker.io containerd runc" in changes[removal].actions[0].command
    install = summaries.index(
        "install 6 packages: docker-ce, docker-ce-cli, containerd.io, docker-buildx-plugin, "
        "docker-compose-plugin, apparmor"
    )
    assert key < removal < install
    assert "update" in changes[install].actions[0].command  # the new source's lists first
    assert not any("docker.io" in t for t in summaries[install:])


def test_ubuntu_gets_its_own_folder_and_codename():
    s = containers.Settings(enabled=True, docker_repo=True)
    changes = containers.check(context(answers(), s, facts="ubuntu-24.04-fresh.txt"))
    line = (
        "deb [signed-by=/etc/apt/keyrings/docker.gpg] https://download.docker.com/linux/ubuntu "
        "noble stable"
    )
    assert line in uploaded(changes, docker_own.LIST_FILE).splitlines()


def test_a_mirror_and_its_key_replace_dockers():
    fpr = "A" * 40
    s = containers.Settings(
        enabled=True,
        docker_repo=True,
        docker_repo_url="http://mirror.lab/docker/",
        docker_repo_key=fpr,
    )
    changes = containers.check(context(answers(), s))
    assert (
        "deb [signed-by=/etc/apt/keyrings/docker.gpg] http://mirror.lab/docker/debian bookworm stable"
        in (uploaded(changes, docker_own.LIST_FILE))
    )
    assert any(c.summary.startswith("install the key AAAAAAAA of Docker's") for c in changes)


def test_dockers_version_with_its_epoch_means_cdi():
    assert toolkit.engine_version("@@candidate\n5:27.3.1-1~debian.12~bookworm\n") == (27, 3)
    s = containers.Settings(enabled=True, docker_repo=True, nvidia=True)
    changes = containers.check(context(answers(), s))
    assert any("GPUs through CDI, Docker 27.3" in c.summary for c in changes)


def test_back_to_the_distribution_removes_dockers_own_packages_first():
    s = containers.Settings(enabled=True)
    r = answers(version="20.10.24+dfsg1-1+deb12u1", package="docker.io")
    changes = containers.check(
        context(r, s, installed=("docker-ce", "docker-ce-cli", "containerd.io"))
    )
    summaries = [c.summary for c in changes]
    assert summaries[0].startswith("remove docker-ce, docker-ce-cli, containerd.io (Docker's own")
    assert summaries[1] == "install 2 packages: docker.io, apparmor"


def test_the_distribution_docker_plans_no_removal_on_a_fresh_host():
    changes = containers.check(
        context(answers(package="docker.io"), containers.Settings(enabled=True))
    )
    assert not any(c.summary.startswith("remove ") for c in changes)


def test_dockers_repository_with_podman_is_refused():
    with pytest.raises(ConfigError) as exc:
        config.build_settings(
            [config.parse_set(["containers.engine=podman", "containers.docker_repo=true"])]
        )
    assert "containers.docker_repo" in str(exc.value) and "Podman" in str(exc.value)


def test_real_apt_reads_the_suite_line_from_a_fixture_in_dockers_layout(tmp_path):
    """The rendered line and the key installed by the step's own script, then apt-get update
    and apt-cache policy in a private apt folder: apt trusts the key, finds the suite and the
    component, and offers docker-ce from there."""
    try:
        root = dockerrepo.build(tmp_path / "repo")
    except RuntimeError as exc:
        pytest.skip(str(exc))
    server, url = serve(root, 0)
    try:
        facts = dataclasses.replace(parse_facts((DATA / "debian-12-nspawn.txt").read_text()))
        repo = docker_own.repo_for(facts, url, aptrepo.key_fingerprint(root))
        keyring = tmp_path / "keyrings" / "docker.gpg"
        repo = dataclasses.replace(repo, keyring=str(keyring))
        run = subprocess.run(["sh", "-c", signedrepo.install_key(repo).command],
                             capture_output=True, text=True)  # fmt: skip
        assert run.returncode == 0, run.stderr
        apt = tmp_path / "apt"
        for d in ("etc/sources.list.d", "etc/preferences.d", "lists/partial", "cache/partial"):
            (apt / d).mkdir(parents=True)
        (apt / "status").write_text("")
        text = render("containers/docker.list.j2", name=repo.name, keyring=repo.keyring,
                      uri=repo.uri, suite=repo.suite, components="stable")  # fmt: skip
        (apt / "etc/sources.list.d/docker.list").write_bytes(text)
        opts = [
            "-o", f"Dir::Etc::SourceList={apt}/etc/none.list",
            "-o", f"Dir::Etc::SourceParts={apt}/etc/sources.list.d",
            "-o", f"Dir::Etc::Preferences={apt}/etc/none.pref",
            "-o", f"Dir::Etc::PreferencesParts={apt}/etc/preferences.d",
            "-o", f"Dir::State::Lists={apt}/lists",
            "-o", f"Dir::State::status={apt}/status",
            "-o", f"Dir::Cache={apt}/cache",
            "-o", "APT::Architecture=amd64",
            "-o", "Debug::NoLocking=1",
        ]  # fmt: skip
        update = subprocess.run(["apt-get", *opts, "update", "--error-on=any"],
                                capture_output=True, text=True)  # fmt: skip
        assert update.returncode == 0, update.stdout + update.stderr
        policy = subprocess.run(["apt-cache", *opts, "policy", "docker-ce"],
                                capture_output=True, text=True).stdout  # fmt: skip
        assert "Candidate: 5:27.3.1-1~debian.12~bookworm" in policy, policy
        assert f"{url.rstrip('/')}/debian bookworm/stable amd64 Packages" in policy, policy
    finally:
        server.shutdown()
        server.server_close()
