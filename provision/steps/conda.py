"""conda: a shared Miniforge (or Miniconda/Anaconda) installation for the box's users.

Manages: the installer, downloaded once to `/var/cache/provision/` and checked against its
pinned sha256 (a mismatch deletes it and stops), a batch-mode install to `conda.prefix`
(default `/opt/conda`) owned by `conda.group` (group-writable, setgid directories) with the
users in that group, `PREFIX/.condarc` (channels, mirror, `auto_activate_base: false`),
`/etc/profile.d/provision-conda.sh` and a marked line in each user's `~/.bashrc`. Anaconda's
Terms of Service are accepted only with `conda.accept_tos = true`, visibly, per channel.
Restarts nothing; never reboots. The verify checks are in conda_verify.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from provision import resources, shell
from provision.changes import Change, Run
from provision.errors import ProvisionError
from provision.facts.reads import Read
from provision.groupshare import share_command, unshared_probe, unshared_read
from provision.resources import packages, template_file
from provision.settings import absolute_path, each, one_of, setting, unix_name, url
from provision.step import Context, Download, Step
from provision.steps.conda_verify import (
    verify_conda_runs,
    verify_condarc,
    verify_login_shell_function,
    verify_prefix_shared,
)

# The pinned Miniforge release: conda-forge only, no Terms of Service. The sha256 values are
# those of the release's published assets (Miniforge3-26.3.2-3-Linux-<arch>.sh); to move to a
# new release, take the hashes from its `.sha256` files and change the three lines together.
MINIFORGE_VERSION = "26.3.2-3"
MINIFORGE_SHA256 = {
    "x86_64": "848194851a98903134187fbb4ab50efe87b003e0c0f808f97644b7524a62bf2c",
    "aarch64": "2c113a69297e612b01ca0f320c22a3107a11f2ab9b573d79ac868a175945ce29",
}
MINIFORGE_URL = (
    "https://github.com/conda-forge/miniforge/releases/download/"
    "{version}/Miniforge3-{version}-Linux-{arch}.sh"
)
CACHE_DIR = "/var/cache/provision"
# Anaconda's `defaults` channels on Linux: using them needs the ToS accepted (since 2025-07-15).
TOS_CHANNELS = ("https://repo.anaconda.com/pkgs/main", "https://repo.anaconda.com/pkgs/r")
TOS_RECORD = "conda-meta/provision-tos-accepted"
PROFILE = "/etc/profile.d/provision-conda.sh"
BASHRC_MARKER = "# provision: conda"
DPKG_TO_UNAME = {"amd64": "x86_64", "arm64": "aarch64"}

# Checks the download; on a mismatch the file is deleted and both hashes are printed.
VERIFY_SCRIPT = """\
file=$1 expected=$2
if printf '%s  %s\\n' "$expected" "$file" | sha256sum -c --quiet -; then exit 0; fi
actual=$(sha256sum -- "$file" | cut -d' ' -f1)
rm -f -- "$file"
echo "checksum mismatch for $file: expected sha256 $expected, got $actual; deleted it" >&2
exit 1
"""
# Adds the marked line to a user's ~/.bashrc (replacing an older marked line), keeping owner.
BASHRC_SCRIPT = """\
file=$1 line=$2 user=$3 marker=$4
if [ ! -e "$file" ]; then
  install -m 0644 -o "$user" -g "$(id -gn -- "$user")" /dev/null "$file"
fi
grep -vF -- "$marker" "$file" > "$file.provision-tmp" || true
printf '%s\\n' "$line" >> "$file.provision-tmp"
chown --reference="$file" -- "$file.provision-tmp"
chmod --reference="$file" -- "$file.provision-tmp"
mv -f -- "$file.provision-tmp" "$file"
"""


def channel(value: str) -> None:
    """A conda channel: a name (conda-forge, nvidia/label/cuda-12.4) or an http(s) URL."""
    if value.startswith(("http://", "https://")):
        url(value)
    elif not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)*", value):
        raise ValueError(f"{value!r} is not a conda channel name or URL")


def sha256_hex(value: str) -> None:
    """64 hex digits (empty: unset)."""
    if value and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise ValueError(f"{value!r} is not a sha256 (64 hex digits)")


@dataclass(frozen=True)
class Settings:
    """Settings of the conda step (inventory keys `conda.<field>`)."""

    enabled: bool = setting(True, "install conda to a shared prefix")
    distribution: str = setting(
        "miniforge",
        "miniforge (conda-forge, no ToS), miniconda or anaconda",
        one_of("miniforge", "miniconda", "anaconda"),
    )
    installer_url: str = setting("", "installer URL (empty: the pinned Miniforge release)", url)
    installer_sha256: str = setting(
        "", "sha256 of the installer (required with installer_url)", sha256_hex
    )
    prefix: str = setting("/opt/conda", "where conda is installed", absolute_path)
    group: str = setting("conda", "group that owns the prefix; the users join it", unix_name)
    users: tuple[str, ...] = setting(
        (), "accounts that get conda (empty: users.accounts and the login user)", each(unix_name)
    )
    channels: tuple[str, ...] = setting(
        ("conda-forge",), "channels in .condarc (names or URLs)", each(channel)
    )
    channel_alias: str = setting("", "channel mirror base URL (empty: conda.anaconda.org)", url)
    accept_tos: bool = setting(False, "accept Anaconda's Terms of Service (miniconda/anaconda)")

    def problems(self) -> list[tuple[str, str]]:
        """Rules between fields, as (field, message)."""
        if not self.enabled:
            return []
        if self.installer_url and not self.installer_sha256:
            return [
                (
                    "installer_url",
                    "needs conda.installer_sha256 too (the installer's sha256, e.g. from the "
                    "release's .sha256 file): nothing is installed unchecked",
                )
            ]
        if self.distribution != "miniforge":
            if not self.accept_tos:
                return [
                    (
                        "distribution",
                        f"{self.distribution} uses Anaconda's defaults channels, whose Terms of "
                        "Service must be accepted: set conda.accept_tos = true once you have "
                        "read https://www.anaconda.com/legal, or use conda.distribution = "
                        "miniforge (conda-forge, no ToS)",
                    )
                ]
            if not self.installer_url:
                return [
                    (
                        "distribution",
                        f"only Miniforge is pinned: set conda.installer_url and "
                        f"conda.installer_sha256 to the {self.distribution} installer",
                    )
                ]
        return []


def installer(ctx: Context, s: Settings) -> tuple[str, str]:
    """(URL, sha256) of the installer: the user's, or the pinned Miniforge for this arch."""
    if s.installer_url:
        return s.installer_url, s.installer_sha256.lower()
    arch = DPKG_TO_UNAME.get(ctx.facts.arch, ctx.facts.arch)
    if arch not in MINIFORGE_SHA256:
        raise ProvisionError(
            f"{ctx.host}: no pinned Miniforge installer for {ctx.facts.arch}",
            "set conda.installer_url and conda.installer_sha256",
        )
    return MINIFORGE_URL.format(version=MINIFORGE_VERSION, arch=arch), MINIFORGE_SHA256[arch]


def cached_path(url_: str) -> str:
    """Where the installer is kept on the host."""
    name = url_.rstrip("/").rsplit("/", 1)[-1] or "conda-installer.sh"
    return f"{CACHE_DIR}/{name}"


def download_command(url_: str, path: str) -> str:
    """Download once (kept in the cache) through a .part file, then rename."""
    return shell.and_(
        shell.cmd("mkdir", "-p", "--", CACHE_DIR),
        f"{{ {shell.cmd('test', '-s', path)} || "
        f"{{ {shell.cmd('curl', '-fsSL', '--retry', '3', '-o', path + '.part', url_)}"
        f" && {shell.cmd('mv', '-f', '--', path + '.part', path)}; }}; }}",
    )


def verify_command(path: str, sha: str) -> str:
    """`sha256sum -c` of the download; a mismatch deletes it and names both hashes."""
    return shell.cmd("sh", "-c", VERIFY_SCRIPT, "verify-installer", path, sha)


def install_command(path: str, prefix: str) -> str:
    """The installer in batch mode (no prompts, no shell init of root's files)."""
    return shell.cmd("bash", path, "-b", "-p", prefix)


def tos_command(prefix: str) -> str:
    """Accept the ToS of each default channel for the whole installation, and record it."""
    conda = f"{prefix}/bin/conda"
    accepts = [
        shell.cmd(conda, "tos", "accept", "--override-channels", "--channel", ch, "--system")
        for ch in TOS_CHANNELS
    ]
    record = shell.cmd(
        "sh", "-c", 'f=$1; shift; printf "%s\\n" "$@" > "$f"', "tos", f"{prefix}/{TOS_RECORD}",
        *TOS_CHANNELS,
    )  # fmt: skip
    return shell.and_(*accepts, record)


def accounts(ctx: Context, s: Settings) -> list[str]:
    """The users who get conda: conda.users, else users.accounts and the login user."""
    if s.users:
        return list(dict.fromkeys(s.users))
    return list(dict.fromkeys([*ctx.of("users").accounts, ctx.facts.user]))


def bashrc_line(prefix: str) -> str:
    """The marked ~/.bashrc line: the conda function in interactive non-login bash."""
    conda_sh = shell.cmd(f"{prefix}/etc/profile.d/conda.sh")
    return f"if [ -f {conda_sh} ]; then . {conda_sh}; fi  {BASHRC_MARKER}"


def conda_read(prefix: str) -> Read:
    """Whether the prefix holds a conda that runs."""
    return Read(shell.cmd(f"{prefix}/bin/conda", "--version"))


# A user's home (first line) and the marked lines of their ~/.bashrc; exit NO_ACCOUNT when
# there is no such account. One script: the file to read comes from the account's entry.
NO_ACCOUNT = 3
BASHRC_READ = f"""\
entry=$(getent passwd -- "$1") || exit {NO_ACCOUNT}
home=$(printf '%s\\n' "$entry" | cut -d: -f6)
printf '%s\\n' "$home"
grep -F -- "$2" "$home/.bashrc"
true
"""


def bashrc_read(user: str) -> Read:
    """The read of a user's home and their ~/.bashrc's marked lines (as root: any home)."""
    return Read(shell.cmd("sh", "-c", BASHRC_READ, "bashrc", user, BASHRC_MARKER), sudo=True)


def reads(ctx: Context) -> list[Read]:
    """Everything check reads: the installation, the group, the files, each user's bashrc."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled:
        return []
    prefix = s.prefix.rstrip("/") or "/"
    found = [conda_read(prefix), Read(shell.cmd("test", "-e", prefix))]
    if s.distribution != "miniforge" and s.accept_tos:
        found.append(Read(shell.cmd("cat", "--", f"{prefix}/{TOS_RECORD}")))
    found += [
        Read(shell.cmd("getent", "group", s.group)),
        unshared_read(prefix, s.group),
        resources.file_read(ctx, f"{prefix}/.condarc"),
        resources.file_read(ctx, PROFILE),
    ]
    return found + [bashrc_read(user) for user in accounts(ctx, s)]


def check(ctx: Context) -> list[Change]:
    """What conda would change on this host."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled:
        return []
    prefix = s.prefix.rstrip("/") or "/"
    changes: list[Change] = []
    conda = ctx.read(conda_read(prefix).command)
    installed = conda.ok
    if not installed:
        url_, sha = installer(ctx, s)
        if ctx.read(shell.cmd("test", "-e", prefix)).ok:
            raise ProvisionError(
                f"{ctx.host}: {prefix} exists but holds no working conda "
                f"({(conda.stderr or conda.stdout).strip()[:200]})",
                "move it away (or remove it) and rerun, or set conda.prefix to another path",
            )
        changes += packages(ctx, ["curl", "ca-certificates"])
        path = cached_path(url_)
        name = {"miniforge": "Miniforge", "miniconda": "Miniconda", "anaconda": "Anaconda"}
        actions = [
            Run(download_command(url_, path), timeout_s=1800, description=f"download {url_}"),
            Run(verify_command(path, sha), description="sha256sum -c"),
            Run(
                install_command(path, prefix),
                timeout_s=1800,
                description=f"install {name[s.distribution]}",
            ),
        ]
        changes.append(
            Change(
                f"install {name[s.distribution]} to {prefix} from {url_} (sha256 {sha[:12]}…)",
                tuple(actions),
            )
        )
    if s.distribution != "miniforge" and s.accept_tos:
        record = ctx.read(shell.cmd("cat", "--", f"{prefix}/{TOS_RECORD}"))
        if not installed or record.stdout.split() != list(TOS_CHANNELS):
            changes.append(
                Change(
                    "accept Anaconda's Terms of Service for "
                    + ", ".join(TOS_CHANNELS)
                    + " (conda.accept_tos = true)",
                    (Run(tos_command(prefix), timeout_s=300, description="conda tos accept"),),
                )
            )
    members = group_members(ctx, s.group)
    if members is None:
        changes.append(
            Change(
                f"create group {s.group}",
                (Run(shell.cmd("groupadd", "--system", "--", s.group)),),
            )
        )
        members = []
    for user in accounts(ctx, s):
        if user not in members:
            changes.append(
                Change(
                    f"add {user} to group {s.group}",
                    (Run(shell.cmd("usermod", "-aG", s.group, "--", user)),),
                )
            )
    if not installed or ctx.read(unshared_probe(prefix, s.group), sudo=True).stdout.strip():
        changes.append(
            Change(
                f"share {prefix} with group {s.group} (group-writable, setgid directories)",
                (Run(share_command(prefix, s.group), timeout_s=900),),
            )
        )
    condarc = {
        "channels": list(s.channels),
        "channel_alias": s.channel_alias,
        "distribution": s.distribution,
    }
    changes += template_file(
        ctx, "conda/condarc.j2", f"{prefix}/.condarc", condarc, group=s.group, mode="0664"
    )
    conda_sh = shell.cmd(f"{prefix}/etc/profile.d/conda.sh")
    changes += template_file(ctx, "conda/provision-conda.sh.j2", PROFILE, {"conda_sh": conda_sh})
    changes += bashrc_changes(ctx, s, prefix)
    return changes


def group_members(ctx: Context, group: str) -> list[str] | None:
    """The members of a group (None when it does not exist)."""
    out = ctx.read(shell.cmd("getent", "group", group))
    fields = out.stdout.strip().split(":")
    if not out.ok or len(fields) < 4:
        return None
    return [m for m in fields[3].split(",") if m]


def bashrc_changes(ctx: Context, s: Settings, prefix: str) -> list[Change]:
    """The marked line in each user's ~/.bashrc."""
    line = bashrc_line(prefix)
    changes = []
    for user in accounts(ctx, s):
        read = bashrc_read(user)
        have = ctx.read(read.command, sudo=read.sudo)
        if have.exit_code == NO_ACCOUNT:
            continue  # usermod above fails with a clear message for a missing account
        home, _, marked = have.stdout.partition("\n")
        bashrc = f"{home}/.bashrc"
        if marked.strip().splitlines() != [line]:
            script = shell.cmd(
                "sh", "-c", BASHRC_SCRIPT, "bashrc", bashrc, line, user, BASHRC_MARKER
            )
            changes.append(Change(f"add conda to {bashrc} ({BASHRC_MARKER})", (Run(script),)))
    return changes


def downloads(ctx: Context) -> list[Download]:
    """The installer (to where check's download looks first), for the background fetcher."""
    s: Settings = ctx.settings(Settings)
    if not s.enabled or ctx.read(conda_read(s.prefix.rstrip("/") or "/").command).ok:
        return []
    url_, sha = installer(ctx, s)
    return [Download("file", url=url_, sha256=sha, dest=cached_path(url_))]


STEP = Step(
    name="conda",
    summary="Miniforge (default) or Miniconda/Anaconda in a shared prefix, checksum-verified",
    settings=Settings,
    check=check,
    verify=(verify_conda_runs, verify_prefix_shared, verify_condarc, verify_login_shell_function),
    reads=reads,
    downloads=downloads,
)
