"""Rules between settings, checked by config.py before any connection.

Each field's own validator lives with its step's Settings; what needs two fields (or two
steps) is here: ports that would collide on the box, network fields that mean nothing without
an interface, GPU-stack requests that no host could satisfy (compat's own tables, no facts),
values that reach a unit file, and downloads over plain HTTP (a warning, or a refusal where
nothing verifies them). A refusal is a ConfigError at the place that set the field.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from provision import formats
from provision.errors import ConfigError

# TCP ports a step makes something listen on, on the box itself (expose.remote_port is on the
# relay, expose.listen_port is UDP, expose.local_port names sshd's port on purpose).
BOX_TCP_PORTS = {
    "ssh.port": None,
    "tensorboard.port": "tensorboard.enabled",
    "jupyter.port": "jupyter.enabled",
}
# Settings whose value lands in a systemd unit, and how (formats.py).
SYSTEMD_VALUES = {
    "tensorboard.logdir": formats.systemd_path,
    "tensorboard.python": formats.systemd_exec,
    "jupyter.notebook_dir": formats.systemd_path,
}
# Downloads that apt verifies with the repository's signature: http is a privacy matter only.
SIGNED_URLS = ("base.apt_mirror", "base.apt_security_mirror", "cuda.repo_url")
# Downloads nothing else verifies (pip has no signatures; conda's repodata is unsigned).
UNSIGNED_URLS = (
    "pytorch.index_url",
    "pytorch.extra_index_url",
    "pytorch.find_links",
    "tensorboard.pip_index_url",
    "jupyter.pip_index_url",
    "conda.channel_alias",
)
GPU_FIELDS = (
    ("driver", "branch"),
    ("driver", "flavour"),
    ("driver", "source"),
    ("cuda", "version"),
    ("pytorch", "index"),
    ("pytorch", "version"),
)


def check_between(settings: dict[str, Any], sources: dict[str, str]) -> list[str]:
    """Refuse what no host could accept; returns warnings (already printed once)."""
    _ports(settings, sources)
    _network(settings, sources)
    _systemd(settings, sources)
    _gpu_stack(settings, sources)
    return _plain_http(settings, sources)


def _get(settings: dict[str, Any], key: str) -> Any:
    step, _, name = key.partition(".")
    return getattr(settings[step], name)


def _explicit(sources: dict[str, str], key: str) -> bool:
    return sources.get(key, "default") != "default"


def _ports(settings: dict[str, Any], sources: dict[str, str]) -> None:
    seen: dict[int, str] = {}
    for key, enabled in BOX_TCP_PORTS.items():
        if enabled and not _get(settings, enabled):
            continue
        port = _get(settings, key)
        if port in seen:
            # Name first, and point at, the one the user wrote (the later one when both were).
            first, second = (key, seen[port]) if _explicit(sources, key) else (seen[port], key)
            raise ConfigError(
                f"{first} = {port} is also {second} ({sources.get(second)}): two services "
                "cannot listen on one port",
                f"give one of them another port, e.g. {first}={port + 1}",
                where=sources.get(first, "default"),
            )
        seen[port] = key


def _network(settings: dict[str, Any], sources: dict[str, str]) -> None:
    net = settings["network"]
    if net.interface:
        return
    defaults = type(net)()
    for f in dataclasses.fields(net):
        if f.name in ("interface", "rollback_after_s"):
            continue
        if getattr(net, f.name) != getattr(defaults, f.name):
            key = f"network.{f.name}"
            raise ConfigError(
                f"{key} is set but network.interface is not, so it would be ignored",
                "name the interface too, e.g. network.interface=eth0 (`provision facts` "
                "lists the host's interfaces), or remove the setting",
                where=sources.get(key, "default"),
            )


def _systemd(settings: dict[str, Any], sources: dict[str, str]) -> None:
    for key, render in SYSTEMD_VALUES.items():
        value = _get(settings, key)
        if not value:
            continue
        try:
            render(value)
        except formats.FormatError as exc:
            raise ConfigError(
                f"{key}: {exc}",
                "use a plain absolute path, e.g. /srv/runs",
                where=sources.get(key, "default"),
            ) from None


def _gpu_stack(settings: dict[str, Any], sources: dict[str, str]) -> None:
    """What compat refuses for every OS and GPU architecture it knows is refused now."""
    from provision import compat

    if not any(settings[step].enabled for step in ("driver", "cuda", "pytorch")):
        return
    wanted = {
        f"{step}.{name}": getattr(settings[step], name)
        for step, name in GPU_FIELDS
        if _explicit(sources, f"{step}.{name}") and getattr(settings[step], name)
    }
    if not wanted:
        return
    names = compat.SET_KEYS  # each setting's Request field

    def refusal(keys: list[str]) -> compat.Incompatible | None:
        request = compat.Request(**{names[k]: wanted[k] for k in keys})
        first: compat.Incompatible | None = None
        # No arch first: the error a current card would get is the clearest one to show.
        for arch in ("", *compat.ARCH_ORDER):
            for os_key in compat.OS_TABLE:
                try:
                    compat.choose([], os_key, request, arch=arch)
                    return None
                except compat.Incompatible as exc:
                    first = first or exc
        return first

    for key in wanted:
        exc = refusal([key])
        if exc is not None:
            raise ConfigError(
                f"{key} = {wanted[key]!r}: {exc.message} (on every OS and GPU compat knows)",
                exc.hint or f"`provision compat --help` shows the valid {key}",
                where=sources[key],
            )
    exc = refusal(list(wanted))
    if exc is not None:
        keys = list(wanted)
        placed = ", ".join(f"{k} = {wanted[k]!r} ({sources[k]})" for k in keys)
        raise ConfigError(
            f"{placed} cannot go together on any OS or GPU: {exc.message}",
            exc.hint or "`provision compat` shows a combination that works",
            where=sources[keys[-1]],
        )


_warned: set[str] = set()


def _plain_http(settings: dict[str, Any], sources: dict[str, str]) -> list[str]:
    warnings = []
    conda = settings["conda"]
    for key in (*SIGNED_URLS, *UNSIGNED_URLS, "conda.installer_url", "conda.channels"):
        value = _get(settings, key)
        urls = value if isinstance(value, tuple) else (value,)
        for url in urls:
            if not str(url).startswith("http://") or _loopback(str(url)):
                continue
            where = sources.get(key, "default")
            if key == "conda.installer_url" and not conda.installer_sha256:
                raise ConfigError(
                    f"{key} = {url!r} is plain http and nothing verifies the installer",
                    "use https://, or set conda.installer_sha256 to the installer's sha256",
                    where=where,
                )
            if key in SIGNED_URLS:
                why = "apt still checks the repository's signature, but anyone on the path sees "
                why += "what is installed"
            elif key == "conda.installer_url":
                why = "it is checked against conda.installer_sha256"
            else:
                why = "nothing signs these packages: anyone on the path can change them"
            warnings.append(f"warning: {where}: {key} = {url} is plain http ({why}); use https")
    for line in warnings:
        if line not in _warned:
            _warned.add(line)
            print(line, file=sys.stderr)
    return warnings


def _loopback(url: str) -> bool:
    """http://127.0.0.1/ is fetched by the host from itself: no network path to tamper with."""
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
