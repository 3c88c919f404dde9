"""containers, Docker's own part: Docker Engine from Docker's apt repository (docker-ce).

`containers.docker_repo = true` installs Docker's packages instead of the distribution's
docker.io (newer releases: Debian 12's docker.io is 20.10, without CDI). The way Docker's
install guide adds the repository (docs.docker.com/engine/install/debian and .../ubuntu): the
key from `<repo>/gpg`, dearmored into /etc/apt/keyrings/docker.gpg (the guide's path until it
kept the armored .asc; apt reads a binary key from a .gpg file), the line
`deb [signed-by=...] https://download.docker.com/linux/<debian|ubuntu> <codename> stable` in
/etc/apt/sources.list.d/docker.list, and the packages docker-ce, docker-ce-cli, containerd.io,
docker-buildx-plugin, docker-compose-plugin. provision/signedrepo.py installs the key only with
Docker's fingerprint (`containers.docker_repo_key` for a mirror that signs with its own).

The guide has the distribution's packages that conflict with Docker's removed first
("Uninstall old versions": docker.io, docker-doc, docker-compose, podman-docker, containerd,
runc); the plan says so, and that images, containers and volumes in /var/lib/docker stay (apt
remove, not purge). Going back to the distribution's docker.io removes Docker's packages the
same way. Docker's packages have no namesakes in Debian or Ubuntu, so no pin is needed.
"""

from __future__ import annotations

from provision import shell, signedrepo
from provision.changes import Change, Run
from provision.facts.reads import Read
from provision.resources import packages
from provision.signedrepo import SignedRepo
from provision.step import Context

# Docker's repository and the key that signs it: 9DC8 5822 9FC7 DD38 854A E2D8 8D81 803C 0EBF
# CD88 ("Docker Release (CE deb) <docker@docker.com>"), the fingerprint Docker's install guide
# told readers to check (docker/docs engine/install/debian.md, PR 11990) [M: Docker's site is
# not reachable from here; `containers.docker_repo_key` overrides it].
DOCKER_REPO = "https://download.docker.com/linux"
DOCKER_KEY = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
KEYRING = "/etc/apt/keyrings/docker.gpg"
LIST_FILE = "/etc/apt/sources.list.d/docker.list"  # the guide's own path
PACKAGES = (
    "docker-ce",
    "docker-ce-cli",
    "containerd.io",
    "docker-buildx-plugin",
    "docker-compose-plugin",
)
# the guide's "Uninstall old versions" list: they conflict with Docker's packages
DISTRIBUTION_PACKAGES = (
    "docker.io",
    "docker-doc",
    "docker-compose",
    "podman-docker",
    "containerd",
    "runc",
)
# what installing the distribution's docker.io again takes away (containerd.io replaces
# containerd and runc)
DOCKER_OWN = ("docker-ce", "docker-ce-cli", "containerd.io")


def repo_for(facts, repo_url: str, repo_key: str) -> SignedRepo:
    """Docker's repository for this host's distribution (`<url>/debian` or `<url>/ubuntu`)."""
    base = f"{repo_url.rstrip('/')}/{facts.os_id}"
    return SignedRepo(
        name="Docker's apt repository",
        key_url=f"{base}/gpg",
        fingerprint=(repo_key or DOCKER_KEY).upper(),
        keyring=KEYRING,
        list_file=LIST_FILE,
        uri=base,
        suite=facts.codename,
        components=("stable",),
        stray=(f"{DOCKER_REPO}/",),
        list_template="containers/docker.list.j2",
    )


def engine_package(s) -> str:
    """The package whose version is Docker's (the engine's version decides CDI)."""
    return "docker-ce" if s.docker_repo else "docker.io"


def reads(ctx: Context, s) -> list[Read]:
    if not s.docker_repo:
        return []
    return signedrepo.reads(ctx, repo_for(ctx.facts, s.docker_repo_url, s.docker_repo_key))


def removal(ctx: Context, names: tuple[str, ...], why: str) -> list[Change]:
    """Remove those of NAMES that are installed (apt-get remove: /var/lib/docker stays)."""
    installed = [n for n in names if ctx.facts.installed(n)]
    if not installed:
        return []
    lock_timeout_s = ctx.of("base").apt_lock_timeout_s
    command = shell.apt_get("remove", *installed, lock_timeout_s=lock_timeout_s)
    return [
        Change(
            f"remove {', '.join(installed)} ({why}; images, containers and volumes in "
            "/var/lib/docker stay)",
            (Run(command, timeout_s=lock_timeout_s + 600, description="apt-get remove"),),
        )
    ]


def package_changes(ctx: Context, s, lock_timeout_s: int) -> tuple[list[Change], bool]:
    """Before the engine's packages: Docker's repository when asked, the other packaging's
    engine removed. Returns the changes and whether apt's sources change."""
    if not s.docker_repo:
        return removal(ctx, DOCKER_OWN, "Docker's own; containers.docker_repo is off"), False
    changes = packages(ctx, ["curl", "ca-certificates", "gpg"], lock_timeout_s=lock_timeout_s)
    repo_changes = signedrepo.changes(
        ctx, repo_for(ctx.facts, s.docker_repo_url, s.docker_repo_key), lock_timeout_s
    )
    changes += repo_changes
    changes += removal(ctx, DISTRIBUTION_PACKAGES, "they conflict with Docker's packages")
    return changes, bool(repo_changes)
