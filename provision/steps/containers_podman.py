"""containers, Podman's part: `containers.engine = podman`, rootful and rootless.

Podman from the distribution (Debian 12: 4.3.1, Debian 13: 5.4.2, from `apt-cache policy`
against deb.debian.org on 2026-12-02). It has no daemon: nothing to enable, no daemon.json
(Podman's own settings live in containers.conf, left as the distribution ships it). The check
image is imported for root and, for rootless use, for each account in `containers.podman_users`,
whose storage is its own (~/.local/share/containers).

Rootless Podman needs, per account (podman(1) "Rootless mode", subuid(5)): a range of
subordinate UIDs and GIDs (/etc/subuid, /etc/subgid; 65536 of each, after the highest range
already given, never overlapping one), newuidmap/newgidmap (`uidmap`), a network helper for
containers with a network (slirp4netns for Podman 4, passt for Podman 5), and a user session
with /run/user/UID: lingering (`loginctl enable-linger`) gives it at boot, so an account's
containers and their `podman` commands work without a login session. Unlike the docker group,
none of this gives the account root on the host.

Not run here: Ubuntu 24.04's `kernel.apparmor_restrict_unprivileged_userns` (rootless
namespaces refused unless an AppArmor profile allows them); Debian sets no such restriction.
"""

from __future__ import annotations

from provision import shell
from provision.changes import Change, Run
from provision.facts.reads import Read
from provision.step import Context

BASE_PACKAGES = ("podman",)
ROOTLESS_PACKAGES = ("uidmap", "dbus-user-session")
# The rootless network helper each release's Podman uses by default (podman 5 moved to pasta).
NETWORK_HELPER = {"debian-12": "slirp4netns", "ubuntu-22.04": "slirp4netns"}
NEWER_HELPER = "passt"
SUBID_FILES = ("/etc/subuid", "/etc/subgid")
FIRST_SUBID = 100000  # login.defs SUB_UID_MIN / SUB_GID_MIN
SUBID_COUNT = 65536  # login.defs SUB_UID_COUNT / SUB_GID_COUNT
LINGER_DIR = "/var/lib/systemd/linger"

SUBIDS_READ = Read(
    shell.seq(
        *(f"echo @@{p.rsplit('/', 1)[1]}; cat -- {shell.cmd(p)} 2>/dev/null" for p in SUBID_FILES)
    )
)


def packages_for(os_key: str, users: tuple[str, ...]) -> tuple[str, ...]:
    if not users:
        return BASE_PACKAGES
    return (*BASE_PACKAGES, *ROOTLESS_PACKAGES, NETWORK_HELPER.get(os_key, NEWER_HELPER))


def as_user(name: str, command: str) -> str:
    """A command as the account, with its user session's runtime folder (lingering gives it)."""
    run = f"/run/user/$(id -u {shell.cmd(name)})"
    env = f"XDG_RUNTIME_DIR={run} DBUS_SESSION_BUS_ADDRESS=unix:path={run}/bus"
    return f"cd / && runuser -u {shell.cmd(name)} -- env {env} {command}"


def image_read(image: str, user: str = "") -> Read:
    command = shell.cmd("podman", "image", "exists", image)
    return Read(as_user(user, command) if user else command, sudo=True)


def linger_read(user: str) -> Read:
    return Read(f"[ -e {shell.cmd(f'{LINGER_DIR}/{user}')} ]")


def reads(users: tuple[str, ...], image: str) -> list[Read]:
    wanted = [image_read(image)]
    if users:
        wanted.append(SUBIDS_READ)
    for user in users:
        wanted += [linger_read(user), image_read(image, user)]
    return wanted


def parse_subids(text: str) -> dict[str, dict[str, tuple[int, int]]]:
    """{file name: {account: (start, count)}} from SUBIDS_READ (the first range of each)."""
    out: dict[str, dict[str, tuple[int, int]]] = {"subuid": {}, "subgid": {}}
    current = None
    for line in text.splitlines():
        if line.startswith("@@"):
            current = out.setdefault(line[2:].strip(), {})
            continue
        fields = line.strip().split(":")
        if current is not None and len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
            current.setdefault(fields[0], (int(fields[1]), int(fields[2])))
    return out


def next_start(ranges: dict[str, tuple[int, int]]) -> int:
    """The first ID after every range given so far (at least SUB_UID_MIN)."""
    ends = [start + count for start, count in ranges.values()]
    return max([FIRST_SUBID, *ends])


def subid_changes(ctx: Context, users: tuple[str, ...]) -> list[Change]:
    """A subordinate UID and GID range for each rootless account that has none."""
    ranges = parse_subids(ctx.read(SUBIDS_READ.command).stdout)
    changes = []
    uid_start, gid_start = next_start(ranges["subuid"]), next_start(ranges["subgid"])
    for user in users:
        flags = []
        if user not in ranges["subuid"]:
            flags += ["--add-subuids", f"{uid_start}-{uid_start + SUBID_COUNT - 1}"]
            uid_start += SUBID_COUNT
        if user not in ranges["subgid"]:
            flags += ["--add-subgids", f"{gid_start}-{gid_start + SUBID_COUNT - 1}"]
            gid_start += SUBID_COUNT
        if flags:
            # podman(1): after /etc/subuid changes, `podman system migrate` makes the
            # account's existing storage and pause process take the new ranges.
            migrate = as_user(user, shell.cmd("podman", "system", "migrate"))
            changes.append(
                Change(
                    f"give {user} {SUBID_COUNT} subordinate IDs for rootless containers "
                    f"({' '.join(flags[1::2])})",
                    (Run(shell.cmd("usermod", *flags, "--", user)), Run(migrate)),
                )
            )
    return changes


def changes(ctx: Context, users: tuple[str, ...], image: str, import_script: str) -> list[Change]:
    """Rootful and rootless Podman ready: subordinate IDs, lingering, the check image for
    root and for each rootless account (`import_script` makes it: the step's own)."""
    out: list[Change] = []
    for user in users:  # first: the IDs' `podman system migrate` runs in the user's session
        if not ctx.read(linger_read(user).command).ok:
            out.append(
                Change(
                    f"let {user}'s user session run without a login (loginctl enable-linger: "
                    "rootless containers need /run/user/UID)",
                    (Run(shell.cmd("loginctl", "enable-linger", "--", user)),),
                )
            )
    out += subid_changes(ctx, users) if users else []
    if not ctx.read(image_read(image).command, sudo=True).ok:
        out.append(
            Change(
                f"make the local check image {image} for root (podman import; no registry)",
                (Run(import_script, description="podman import"),),
            )
        )
    for user in users:
        if not ctx.read(image_read(image, user).command, sudo=True).ok:
            script = shell.cmd("sh", "-c", import_script)
            out.append(
                Change(
                    f"make the local check image {image} for {user} (rootless: its own storage)",
                    (Run(as_user(user, script), description=f"podman import as {user}"),),
                )
            )
    return out
