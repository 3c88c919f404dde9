"""The lab's cache: every box's apt and pip pointed at one cache, so N boxes download each
package once; and, optionally, a box made the lab's apt cache.

apt (`base.apt_proxy`): `/etc/apt/apt.conf.d/99provision-proxy` sets Acquire::http::Proxy
(apt-cacher-ng from the distribution listens on 3142). https sources go DIRECT unless
`base.apt_proxy_https` names a proxy: apt-cacher-ng cannot cache TLS, it could only tunnel it.
The file sorts after the others in apt.conf.d, so its value wins over a cloud image's own
proxy file. base writes it before its first `apt-get update`, and each apt run of base first
checks that the proxy answers from the host: an unreachable proxy is named as the proxy, not
reported as a failing source. Unsetting the setting moves the file aside.

pip (`base.pip_index_url`): `/etc/pip.conf` sets `[global] index-url` (with `trusted-host` for
an http URL, which pip otherwise ignores), read by every pip on the box that is not given its
own `--index-url`: TensorBoard's venv (unless `tensorboard.pip_index_url`), pytorch's extra
packages (unless `pytorch.index_url`). torch and its dependencies still come from the index
`pytorch.index` / `pytorch.index_url` choose. Unsetting it moves a pip.conf of ours aside.

The cache box (`base.apt_cache_server`): apt-cacher-ng from the distribution, with
`/etc/apt-cacher-ng/zzz-provision.conf` (port 3142, `BindAddress` from `base.apt_cache_bind`),
enabled and running.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from provision import shell
from provision.changes import Change, Run
from provision.errors import ProvisionError, Skip
from provision.facts.reads import Read
from provision.resources import file_read, move_aside, service, service_read, template_file
from provision.settings import each, ip_address, setting, url
from provision.step import Context

APT_PROXY_CONF = "/etc/apt/apt.conf.d/99provision-proxy"
PIP_CONF = "/etc/pip.conf"
ACNG_CONF = "/etc/apt-cacher-ng/zzz-provision.conf"
ACNG_PORT = 3142
MARK = "Managed by provision"
# Which of the files this module manages are there and ours (unsetting a setting removes
# only a file provision wrote: an /etc/pip.conf of the user's own stays).
OURS_READ = Read(f"grep -lF -- {shell.cmd(MARK)} {APT_PROXY_CONF} {PIP_CONF} 2>/dev/null; true")
PROXY_RE = re.compile(r"^http://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*)(:[0-9]{1,5})?/?$")


def proxy_url(value: str) -> None:
    """An apt proxy: http://HOST[:PORT] (empty: none)."""
    if value and not PROXY_RE.match(value):
        raise ValueError(
            f"{value!r} is not an apt proxy URL: write http://HOST:PORT (apt-cacher-ng listens "
            f"on {ACNG_PORT}), e.g. http://10.0.0.5:{ACNG_PORT}"
        )


@dataclass(frozen=True)
class CacheSettings:
    """base's lab cache settings (base.Settings inherits them)."""

    apt_proxy: str = setting(
        "",
        "the lab's apt cache for http sources, e.g. http://10.0.0.5:3142 (empty: none)",
        proxy_url,
    )
    apt_proxy_https: str = setting(
        "", "proxy for https sources (empty: DIRECT; apt-cacher-ng cannot cache TLS)", proxy_url
    )
    pip_index_url: str = setting(
        "", "the lab's pip index for every pip on the box, in /etc/pip.conf (empty: PyPI)", url
    )
    apt_cache_server: bool = setting(False, "make this box the lab's apt cache (apt-cacher-ng)")
    apt_cache_bind: tuple[str, ...] = setting(
        (), "addresses apt-cacher-ng listens on (empty: every address)", each(ip_address)
    )


def host_port(proxy: str) -> tuple[str, int]:
    """The host and port of a proxy URL (80 when it names none)."""
    parts = urlsplit(proxy)
    return (parts.hostname or ""), (parts.port or 80)


def trusted_host(index_url: str) -> str:
    """pip's trusted-host for an http index ('' for https and file URLs)."""
    parts = urlsplit(index_url)
    if parts.scheme != "http":
        return ""
    return parts.netloc.rsplit("@", 1)[-1]


def reads(ctx: Context, s: CacheSettings) -> list[Read]:
    """The reads `changes` makes, from the settings alone."""
    wanted = [OURS_READ]
    if s.apt_proxy:
        wanted.append(file_read(ctx, APT_PROXY_CONF))
    if s.pip_index_url:
        wanted.append(file_read(ctx, PIP_CONF))
    if s.apt_cache_server:
        wanted.append(file_read(ctx, ACNG_CONF))
        if ctx.facts.installed("apt-cacher-ng"):
            wanted.append(service_read("apt-cacher-ng"))
    return wanted


def changes(ctx: Context, s: CacheSettings, backup_dir: str) -> list[Change]:
    """The proxy drop-in and pip.conf (written, or moved aside when their setting is unset)."""
    if s.apt_proxy and s.apt_cache_server:
        raise ProvisionError(
            f"{ctx.host}: base.apt_cache_server and base.apt_proxy are both set: the cache box "
            "fetches from the sources itself",
            f"unset base.apt_proxy for {ctx.host} (on its host line: base.apt_proxy=)",
        )
    ours = set(ctx.read(OURS_READ.command).stdout.split())
    out: list[Change] = []
    if s.apt_proxy:
        variables = {"proxy": s.apt_proxy, "https_proxy": s.apt_proxy_https}
        out += template_file(ctx, "base/99provision-proxy.j2", APT_PROXY_CONF, variables)
    elif APT_PROXY_CONF in ours:
        out.append(move_aside(APT_PROXY_CONF, "base.apt_proxy is unset", backup_dir))
    if s.pip_index_url:
        variables = {"index_url": s.pip_index_url, "trusted_host": trusted_host(s.pip_index_url)}
        out += template_file(ctx, "base/pip.conf.j2", PIP_CONF, variables)
    elif PIP_CONF in ours:
        out.append(move_aside(PIP_CONF, "base.pip_index_url is unset", backup_dir))
    return out


def probe(proxy: str) -> Run:
    """Fails, naming the proxy and the fix, when the host cannot connect to it (bash's
    /dev/tcp: bash and timeout are essential packages on Debian and Ubuntu)."""
    host, port = host_port(proxy)
    connect = shell.cmd(
        "timeout", "10", "bash", "-c", f"exec 3<>/dev/tcp/{host.strip('[]')}/{port}"
    )
    message = (
        f"base.apt_proxy {proxy} does not answer from this host (no TCP connection to "
        f"{host}:{port}): start the cache there (sudo systemctl start apt-cacher-ng), fix "
        "base.apt_proxy, or unset it to fetch from the sources directly"
    )
    fail = f"{{ printf '%s\\n' {shell.cmd(message)} >&2; exit 1; }}"
    return Run(f"{connect} 2>/dev/null || {fail}", timeout_s=30, description="apt proxy check")


def through_proxy(package_changes: list[Change], s: CacheSettings) -> list[Change]:
    """base's apt changes, each checking first that the proxy answers (same plan lines)."""
    if not s.apt_proxy:
        return package_changes
    return [replace(c, actions=(probe(s.apt_proxy), *c.actions)) for c in package_changes]


def server_packages(s: CacheSettings) -> list[str]:
    """The packages the cache box needs (installed with base's own)."""
    return ["apt-cacher-ng"] if s.apt_cache_server else []


def server_changes(ctx: Context, s: CacheSettings) -> list[Change]:
    """apt-cacher-ng's port and addresses, enabled and running (after base's packages)."""
    if not s.apt_cache_server:
        return []
    variables = {"port": ACNG_PORT, "bind": s.apt_cache_bind}
    out = template_file(
        ctx, "base/acng-provision.conf.j2", ACNG_CONF, variables, restart="apt-cacher-ng"
    )
    if ctx.facts.installed("apt-cacher-ng"):
        out += service(ctx, "apt-cacher-ng")
    return out


# verify: what apt and pip themselves say, not our files.
PIP_CONFIG = (
    "for p in /opt/provision/tensorboard/bin/pip /opt/provision/envs/*/bin/pip "
    '/opt/conda/bin/pip; do [ -x "$p" ] && exec "$p" config list; done; '
    "exec python3 -m pip config list"
)


def apt_config(host, key: str) -> str:
    """The effective value of one apt option (`apt-config dump`), '' when unset."""
    out = host.check_output(f"apt-config dump {key}")
    m = re.search(rf'^{re.escape(key)} "(.*)";$', out, re.M)
    return m.group(1) if m else ""


def verify_lab_cache(host, s: CacheSettings) -> None:
    """apt (and pip) fetch through the lab's cache"""
    if not (s.apt_proxy or s.pip_index_url or s.apt_cache_server):
        raise Skip("no base.apt_proxy, base.pip_index_url or base.apt_cache_server set")
    if s.apt_proxy:
        got = apt_config(host, "Acquire::http::Proxy")
        assert got == s.apt_proxy, f"apt's Acquire::http::Proxy is {got!r}, not {s.apt_proxy}"
        https = apt_config(host, "Acquire::https::Proxy")
        want = s.apt_proxy_https or "DIRECT"
        assert https == want, f"apt's Acquire::https::Proxy is {https!r}, not {want}"
    if s.pip_index_url:
        pip = host.run(PIP_CONFIG)
        if pip.rc == 0:  # no pip on the box yet: nothing would install from the wrong index
            want = f"global.index-url='{s.pip_index_url}'"
            assert want in pip.stdout.splitlines(), f"pip config list says: {pip.stdout.strip()}"
    if s.apt_cache_server:
        assert host.service("apt-cacher-ng").is_running, "apt-cacher-ng is not running"
        assert host.socket(f"tcp://{ACNG_PORT}").is_listening or any(
            host.socket(f"tcp://{a}:{ACNG_PORT}").is_listening for a in s.apt_cache_bind
        ), f"nothing listens on port {ACNG_PORT}"
