"""containers: a container engine on the box (off by default): Docker or Podman, the distro's.

Manages: the `docker.io` package (Debian 12: 20.10.24, Debian 13: 26.1.5, from `apt-cache
policy` against deb.debian.org on 2026-12-02) with `apparmor` (Debian's
Recommends: the engine loads its default container profile with apparmor_parser), the
`docker.service` unit (enabled, running), the keys of `/etc/docker/daemon.json` that this
step owns (log rotation for the json-file/local drivers, `data-root` when
`containers.data_root` is set), merged into the file, never overwritten: every other key
stays (provision/dockerjson.py). Before its first change a copy of the file as it was is kept
(`/var/lib/provision/containers/`), so verify can tell that the user's keys are still there.
dockerd checks the new file before it is put in place when it can (`dockerd --validate`,
Docker >= 23); docker restarts only when the file changed (containers stop unless the user
turned on live-restore). Membership of the `docker` group is root-equivalent: the users step
adds no one to it; the accounts named in `containers.docker_users` join it. A small local image
(`provision-check:dash`, the host's own /bin/sh and the libraries it needs: no registry is
needed) is what verify runs a container from. Never reboots.

`containers.nvidia`: the NVIDIA Container Toolkit and Docker's way to the GPUs (CDI from
Docker 25, else the nvidia runtime): provision/steps/containers_toolkit.py.

`containers.engine = podman`: Podman from the distribution, rootful, and rootless for the
accounts in `containers.podman_users`: provision/steps/containers_podman.py.

`containers.docker_repo`: Docker's own packages (docker-ce) from Docker's apt repository
instead of docker.io: provision/steps/containers_docker_repo.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from provision import dockerjson, resources, shell, stack
from provision.changes import Change, Run
from provision.errors import Skip
from provision.facts.reads import Read
from provision.resources import file_content, file_read, packages, service, service_read
from provision.settings import absolute_path, each, fingerprint, setting, unix_name, url
from provision.step import Context, Download, Step
from provision.steps import containers_docker_repo as docker_own
from provision.steps import containers_podman as podman
from provision.steps import containers_toolkit as toolkit
from provision.unitstate import enabled_state, not_enabled_message

UNIT = "docker.service"
PACKAGES = ("docker.io", "apparmor")
DOCKER_REPO_PACKAGES = (*docker_own.PACKAGES, "apparmor")
IMAGE = "provision-check:dash"
SAVED_MARK, PRESENT_MARK = "@@saved", "@@present"
# dockerd checks a configuration file without starting since Docker 23.0 (moby/moby#42393,
# docker/cli#3108 documents `--validate`); 20.10 (Debian 12) has no such flag: there the file
# is JSON by construction and a key dockerd refuses shows at the restart.
VALIDATE = (
    "if dockerd --help 2>&1 | grep -q -e '--validate'; then "
    "dockerd --validate --config-file {path}; fi"
)
# Log drivers whose files Docker rotates with max-size/max-file (Docker's logging docs);
# those options are invalid for the others (journald, syslog, ...), which rotate themselves.
ROTATED_DRIVERS = ("json-file", "local")


def engine_name(value: str) -> None:
    if value not in ("docker", "podman"):
        raise ValueError(f"{value!r} is not a container engine (docker or podman)")


def log_size(value: str) -> None:
    """Docker's max-size: a number with k, m or g (empty: leave log rotation alone)."""
    if value and not re.fullmatch(r"[1-9][0-9]*[kmg]", value):
        raise ValueError(f"{value!r} is not a log size (e.g. 10m; k, m or g)")


def log_files(value: int) -> None:
    if value < 1:
        raise ValueError(f"{value} is not a number of log files (1 or more)")


@dataclass(frozen=True)
class Settings:
    """Settings of the containers step (inventory keys `containers.<field>`)."""

    enabled: bool = setting(False, "install a container engine")
    engine: str = setting(
        "docker", "the engine, from the distribution: docker or podman (daemonless, rootless "
        "for containers.podman_users)", engine_name,
    )  # fmt: skip
    data_root: str = setting(
        "", "where images and containers live (daemon.json data-root; empty: Docker's "
        "/var/lib/docker)", absolute_path,
    )  # fmt: skip
    log_max_size: str = setting(
        "10m", "rotate a container's log at this size (Docker; empty: leave it alone)", log_size
    )
    log_max_file: int = setting(3, "rotated log files kept per container (Docker)", log_files)
    docker_users: tuple[str, ...] = setting(
        (), "accounts to add to the docker group (root-equivalent: empty, none)", each(unix_name)
    )
    docker_repo: bool = setting(
        False, "Docker's own packages (docker-ce) from Docker's apt repository, not the "
        "distribution's docker.io", 
    )  # fmt: skip
    docker_repo_url: str = setting(
        docker_own.DOCKER_REPO, "base URL of Docker's apt repository (mirrors; the "
        "distribution's folder, debian or ubuntu, is added)", url,
    )  # fmt: skip
    docker_repo_key: str = setting(
        "", "fingerprint of the key that signs it (empty: Docker's)", fingerprint
    )
    nvidia: bool = setting(
        False, "the NVIDIA Container Toolkit, so containers get the GPUs (CDI or the runtime)"
    )
    nvidia_default_runtime: bool = setting(
        False, "make nvidia Docker's default runtime (Docker < 25, where the runtime is used)"
    )
    toolkit_repo_url: str = setting(
        toolkit.TOOLKIT_REPO, "base URL of NVIDIA's container toolkit repository (mirrors)", url
    )
    toolkit_repo_key: str = setting(
        "", "fingerprint of the key that signs it (empty: NVIDIA's)", fingerprint
    )
    podman_users: tuple[str, ...] = setting(
        (), "accounts that run rootless Podman (subordinate IDs, lingering; not root-equivalent)",
        each(unix_name),
    )  # fmt: skip

    def problems(self) -> list[tuple[str, str]]:
        """Settings that mean the other engine."""
        if self.engine == "podman":
            for name, why in (
                ("docker_users", "Podman has no docker group: name rootless accounts in "
                 "containers.podman_users"),
                ("data_root", "not built for Podman (its storage is graphroot in "
                 "/etc/containers/storage.conf)"),
                ("nvidia_default_runtime", "Podman takes GPUs through CDI only "
                 "(--device nvidia.com/gpu=all)"),
                ("docker_repo", "Docker's repository holds Docker's engine; Podman comes "
                 "from the distribution"),
            ):  # fmt: skip
                if getattr(self, name):
                    return [(name, why)]
        elif self.podman_users:
            return [("podman_users", "rootless accounts need containers.engine = podman")]
        return []


def config_read() -> Read:
    """Whether the copy of the user's daemon.json is kept, then the file itself (after the
    mark, verbatim) when there is one."""
    return Read(
        shell.seq(
            shell.if_(shell.exists(dockerjson.ORIGINAL), f"echo {SAVED_MARK}", "echo @@none"),
            shell.if_(
                shell.exists(dockerjson.PATH),
                shell.seq(f"echo {PRESENT_MARK}", shell.cmd("cat", "--", dockerjson.PATH)),
            ),
        ),
        sudo=True,
    )


IMAGE_READ = Read(shell.cmd("docker", "image", "inspect", "--format", "{{.Id}}", IMAGE), True)
GROUP_READ = Read(shell.cmd("getent", "group", "docker"))


def current_config(ctx: Context) -> tuple[bool, bool, dict]:
    """(a copy of the user's file is kept, the file exists, its object)."""
    out = ctx.read(config_read().command, sudo=True).stdout
    first, _, rest = out.partition("\n")
    present = rest.startswith(PRESENT_MARK + "\n") or rest.strip() == PRESENT_MARK
    text = rest.partition("\n")[2] if present else ""
    return first.strip() == SAVED_MARK, present, dockerjson.parse(text)


def owned_keys(s: Settings, current: dict, version: tuple[int, int] | None = None) -> dict:
    """The daemon.json keys and values this step sets, given the file as it is and the
    engine's version (the toolkit's keys depend on it)."""
    wanted: dict = toolkit.owned_keys(s, version)
    if s.log_max_size and current.get("log-driver", "json-file") in ROTATED_DRIVERS:
        # Docker takes log-opts values as strings only, max-file too (its daemon.json docs).
        wanted["log-opts"] = {"max-size": s.log_max_size, "max-file": str(s.log_max_file)}
    if s.data_root:
        wanted["data-root"] = s.data_root
    return wanted


def save_original() -> str:
    """Keep the file as the user had it ({} when there was none), once."""
    folder = dockerjson.ORIGINAL.rsplit("/", 1)[0]
    return shell.and_(
        shell.cmd("install", "-d", "-m", "0700", "--", folder),
        shell.if_(
            shell.exists(dockerjson.PATH),
            shell.cmd("cp", "-p", "--", dockerjson.PATH, dockerjson.ORIGINAL),
            shell.write_file("{}\n", dockerjson.ORIGINAL),
        ),
    )


def import_image(engine: str = "docker") -> str:
    """A one-layer image of the host's /bin/sh and the libraries ldd names for it: enough to
    run a container with no registry reachable (`docker import` or `podman import`)."""
    return shell.script(
        "set -e",
        "d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT",
        'for f in /bin/sh $(ldd "$(readlink -f /bin/sh)" | grep -o "/[^ ]*"); do',
        '  mkdir -p "$d$(dirname "$f")"; cp -L "$f" "$d$f"',
        "done",
        f'tar -C "$d" -c . | {engine} import -c \'CMD ["/bin/sh"]\' - {IMAGE} >/dev/null',
    )


def group_members(text: str) -> list[str]:
    fields = text.strip().split(":")
    return [m for m in fields[3].split(",") if m] if len(fields) > 3 else []


def engine_packages(s: Settings) -> tuple[str, ...]:
    """Docker's packages, the distribution's or Docker's own."""
    return DOCKER_REPO_PACKAGES if s.docker_repo else PACKAGES


def reads(ctx: Context) -> list[Read]:
    """What check reads, from the settings and facts alone."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled:
        return []
    if s.engine == "podman":
        return podman.reads(s.podman_users, IMAGE) + toolkit.reads(ctx, s)
    wanted = [config_read(), service_read(UNIT), IMAGE_READ, file_read(ctx, dockerjson.PATH)]
    wanted += docker_own.reads(ctx, s)
    if s.docker_users:
        wanted.append(GROUP_READ)
    return wanted + toolkit.reads(ctx, s, docker_own.engine_package(s))


def check(ctx: Context) -> list[Change]:
    """What containers would change on this host."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled:
        return []
    lock_timeout_s = ctx.of("base").apt_lock_timeout_s
    if s.engine == "podman":
        wanted = podman.packages_for(ctx.facts.os_key, s.podman_users)
        changes = packages(ctx, wanted, lock_timeout_s=lock_timeout_s)
        changes += toolkit.package_changes(ctx, s, lock_timeout_s)
        changes += toolkit.device_changes(ctx, s, None)
        return changes + podman.changes(ctx, s.podman_users, IMAGE, import_image("podman"))
    changes, sources_changed = docker_own.package_changes(ctx, s, lock_timeout_s)
    changes += packages(
        ctx, engine_packages(s), lock_timeout_s=lock_timeout_s, sources_changed=sources_changed
    )
    changes += toolkit.package_changes(ctx, s, lock_timeout_s)
    version = toolkit.read_version(ctx, docker_own.engine_package(s)) if s.nvidia else None
    saved, present, current = current_config(ctx)
    merged = dockerjson.merge(current, owned_keys(s, current, version))
    if merged != current or (not present and merged):
        if not saved:
            changes.append(
                Change(
                    f"keep a copy of daemon.json as it is ({dockerjson.ORIGINAL})",
                    (Run(save_original()),),
                )
            )
        keys = ", ".join(dockerjson.changed_keys(current, merged))
        gpus = f"; GPUs through {toolkit.why(version)}" if s.nvidia else ""
        changes += file_content(
            ctx,
            dockerjson.PATH,
            dockerjson.dumps(merged).encode(),
            validate=VALIDATE,
            restart=UNIT,
            summary=f"set {keys} in {dockerjson.PATH} (the other keys stay; restarts docker{gpus})",
        )
    changes += toolkit.device_changes(ctx, s, version)
    changes += service(ctx, UNIT)
    if not ctx.read(IMAGE_READ.command, sudo=True).ok:
        changes.append(
            Change(
                f"make the local check image {IMAGE} (the host's /bin/sh; no registry)",
                (Run(import_image(), description="docker import"),),
            )
        )
    if s.docker_users:
        members = group_members(ctx.read(GROUP_READ.command).stdout)
        missing = [n for n in s.docker_users if n not in members]
        if missing:
            changes.append(
                Change(
                    f"add {', '.join(missing)} to group docker (root-equivalent: a member can "
                    "start a container as root; containers.docker_users)",
                    tuple(Run(shell.cmd("usermod", "-aG", "docker", "--", n)) for n in missing),
                )
            )
    return changes


def verify_engine(host, s: Settings) -> None:
    """the engine answers (Docker: docker.service enabled and running; Podman has no daemon)"""
    if not s.enabled:
        raise Skip("containers.enabled is off")
    if s.engine == "podman":
        out = host.run("podman info --format '{{.Version.Version}}'")
        assert out.rc == 0 and out.stdout.strip(), f"podman does not answer: {out.stderr[-300:]}"
        return
    enabled, state = enabled_state(host, UNIT)
    assert enabled, not_enabled_message(UNIT, state)
    out = host.run("docker version --format '{{.Server.Version}}'")
    assert out.rc == 0 and out.stdout.strip(), f"the engine does not answer: {out.stderr[-300:]}"


def verify_container_runs(host, s: Settings) -> None:
    """a container runs from the local check image (run --rm, no network)"""
    if not s.enabled:
        raise Skip("containers.enabled is off")
    echo = ["/bin/sh", "-c", "echo provision-container-ok"]
    out = host.run(shell.cmd(s.engine, "run", "--rm", "--network", "none", IMAGE, *echo))
    assert out.stdout.strip() == "provision-container-ok", (
        f"{s.engine} run {IMAGE} failed (exit {out.rc}): {(out.stderr or out.stdout)[-400:]}"
    )


def verify_daemon_json(host, s: Settings) -> None:
    """daemon.json holds this step's keys, and every key the user had there is still there"""
    if not s.enabled:
        raise Skip("containers.enabled is off")
    if s.engine == "podman":
        raise Skip("Podman has no daemon.json")
    text = host.run(shell.cmd("cat", "--", dockerjson.PATH)).stdout if host.file(
        dockerjson.PATH).exists else ""  # fmt: skip
    current = dockerjson.parse(text)
    owned = owned_keys(s, current, toolkit.host_version(host) if s.nvidia else None)
    missing = dockerjson.changed_keys(dockerjson.merge(current, owned), current)
    assert not missing, f"{dockerjson.PATH} lacks or changed: {', '.join(missing)}"
    if host.file(dockerjson.ORIGINAL).exists:
        original = dockerjson.parse(host.run(shell.cmd("cat", "--", dockerjson.ORIGINAL)).stdout,
                                    dockerjson.ORIGINAL)  # fmt: skip
        lost = dockerjson.kept(original, current, owned)
        assert not lost, (
            f"keys you had in {dockerjson.PATH} are gone or changed: {', '.join(lost)} (if "
            f"you changed them on purpose, copy the file over {dockerjson.ORIGINAL})"
        )


def verify_docker_users(host, s: Settings) -> None:
    """the accounts in containers.docker_users are in the docker group"""
    if not s.enabled or not s.docker_users:
        raise Skip("containers.docker_users is empty" if s.enabled else "containers.enabled is off")
    members = group_members(host.run("getent group docker").stdout)
    missing = [n for n in s.docker_users if n not in members]
    assert not missing, f"not in the docker group: {', '.join(missing)}"


def verify_gpu_in_container(host, s: Settings) -> None:
    """a container sees the GPUs (nvidia-smi -L inside, through CDI or the nvidia runtime)"""
    if not s.enabled or not s.nvidia:
        raise Skip("containers.nvidia is off" if s.enabled else "containers.enabled is off")
    if not stack.has_gpu(host):
        raise Skip("no NVIDIA GPU on this host: no container can see one (tests/gpu runs this)")
    version = toolkit.host_version(host) if s.engine == "docker" else None
    cdi = toolkit.mode(s, version) == "cdi"
    gpus = ["--device", "nvidia.com/gpu=all"] if cdi else ["--gpus", "all"]
    out = host.run(shell.cmd(s.engine, "run", "--rm", *gpus, IMAGE, "nvidia-smi", "-L"))
    assert out.rc == 0 and "GPU 0" in out.stdout, (
        f"nvidia-smi -L in a container failed (exit {out.rc}): {(out.stderr or out.stdout)[-400:]}"
    )


def verify_rootless(host, s: Settings) -> None:
    """each account in containers.podman_users runs a rootless container of its own"""
    # its subordinate IDs, its lingering user session, the image in its own storage
    if not s.enabled or s.engine != "podman" or not s.podman_users:
        raise Skip("containers.podman_users is empty" if s.enabled else "containers.enabled is off")
    ranges = podman.parse_subids(host.run(podman.SUBIDS_READ.command).stdout)
    for user in s.podman_users:
        for name in ("subuid", "subgid"):
            assert user in ranges[name], f"{user} has no range in /etc/{name}"
        assert host.file(f"{podman.LINGER_DIR}/{user}").exists, (
            f"{user} does not linger (loginctl enable-linger {user})"
        )
        echo = shell.cmd("podman", "run", "--rm", "--network", "none", IMAGE, "/bin/sh", "-c",
                         "echo provision-rootless-ok")  # fmt: skip
        out = host.run(podman.as_user(user, echo))
        assert out.stdout.strip() == "provision-rootless-ok", (
            f"a rootless container of {user} failed (exit {out.rc}): "
            f"{(out.stderr or out.stdout)[-400:]}"
        )


def downloads(ctx: Context) -> list[Download]:
    """The engine's packages when check installs them, for the background fetcher (the
    toolkit's come from a repository check may add first: not prefetched)."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled:
        return []
    if s.engine == "podman":
        return resources.package_downloads(
            ctx, podman.packages_for(ctx.facts.os_key, s.podman_users)
        )
    if s.docker_repo:
        return []  # from a repository check may add first: not prefetched
    return resources.package_downloads(ctx, PACKAGES)


STEP = Step(
    name="containers",
    summary="Docker or Podman, NVIDIA's container toolkit; daemon.json merged, never overwritten",
    settings=Settings,
    check=check,
    verify=(
        verify_engine,
        verify_container_runs,
        verify_daemon_json,
        verify_docker_users,
        verify_rootless,
        toolkit.verify_toolkit,
        verify_gpu_in_container,
    ),
    reads=reads,
    downloads=downloads,
)
