"""A third-party apt repository trusted for its own key only: the key file, the source line
that names it (`signed-by`), the pin, and the package lists.

The way NVIDIA's and Docker's install guides add their repositories (a key downloaded with
curl and dearmored into /usr/share/keyrings, a `deb [signed-by=...]` line, never apt-key),
with what those guides leave out: the downloaded key is installed only when it holds the
fingerprint the repository is known to be signed with (a mirror or a stand-in names its own:
`*.repo_key` settings), the key file is checked again on every run (a replaced or emptied file
is planned), sources of the same vendor's older repositories are moved aside
(/var/backups/provision), and the lists are downloaded once the files change. Check reads
apt's index targets through cudarepo's one read (STATE_READ), so the GPU steps and this one
share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from provision import cudarepo, shell
from provision.changes import Change, Run
from provision.errors import ProvisionError
from provision.facts import split_sections
from provision.facts.reads import Read
from provision.resources import apt_update, file_read, move_aside, template_file
from provision.step import Context


@dataclass(frozen=True)
class SignedRepo:
    """One vendor repository: where its key and packages are, and the files that trust it."""

    name: str  # what the plan calls it, e.g. "NVIDIA's container toolkit repository"
    key_url: str  # the ASCII-armored (or binary) public key
    fingerprint: str  # the primary key that signs the repository
    keyring: str  # /usr/share/keyrings/<name>.gpg
    list_file: str  # /etc/apt/sources.list.d/<name>.list
    uri: str  # the deb line's URI (may hold apt's $(ARCH))
    suite: str  # "/" for a flat repository, else the codename
    components: tuple[str, ...] = ()
    pin_file: str = ""  # /etc/apt/preferences.d/<name>; empty: no pin
    pin_packages: tuple[str, ...] = ()
    stray: tuple[str, ...] = ()  # URI prefixes of the vendor's other (older) repositories
    # the step's own templates (under its folder): variables name, keyring, uri, suite,
    # components; and name, origin, packages
    list_template: str = ""
    pin_template: str = ""

    @property
    def origin(self) -> str:
        return urlsplit(self.uri).hostname or ""

    def uri_for(self, arch: str) -> str:
        """The URI as apt reports it in its index targets ($(ARCH) replaced)."""
        return self.uri.replace("$(ARCH)", arch).rstrip("/") + "/"


def key_read(repo: SignedRepo) -> Read:
    """The key file, base64 (the fingerprints are read here: the host may have no gpg)."""
    return Read(
        shell.seq(
            "echo @@key",
            shell.if_(f"[ -s {shell.cmd(repo.keyring)} ]", f"base64 < {shell.cmd(repo.keyring)}"),
        )
    )


def reads(ctx: Context, repo: SignedRepo) -> list[Read]:
    """The reads `changes` makes."""
    wanted = [cudarepo.STATE_READ, key_read(repo), file_read(ctx, repo.list_file)]
    if repo.pin_file:
        wanted.append(file_read(ctx, repo.pin_file))
    return wanted


def held_keys(ctx: Context, repo: SignedRepo) -> tuple[str, ...]:
    """The primary keys' fingerprints in the repository's key file (none when it is missing)."""
    out = ctx.read(key_read(repo).command).stdout
    lines = split_sections(out).get("key", "").splitlines()
    return cudarepo.keyring_fingerprints(lines)


def install_key(repo: SignedRepo) -> Run:
    """Download the key, refuse it unless it holds the fingerprint, then put it in place
    (dearmored when armored, as the vendors' guides do with `gpg --dearmor`)."""
    line = shell.cmd(f"fpr:::::::::{repo.fingerprint}:")
    listed = f'gpg --batch --show-keys --with-colons "$t" 2>/dev/null | grep -qx -- {line}'
    refuse = shell.cmd(
        "printf",
        "%s does not hold the key %s; refused it\\n",
        repo.key_url,
        repo.fingerprint,
    )
    return Run(
        shell.script(
            "set -e",
            't=$(mktemp); trap \'rm -f "$t" "$t.gpg"\' EXIT',
            shell.cmd("curl", "-fsSL", "--retry", "3", "-o") + ' "$t" ' + shell.cmd(repo.key_url),
            f"if ! {listed}; then {refuse} >&2; exit 1; fi",
            "if grep -q -- '-----BEGIN PGP' \"$t\"; then "
            'gpg --batch --yes --dearmor -o "$t.gpg" "$t"; else cp -- "$t" "$t.gpg"; fi',
            shell.cmd("install", "-D", "-m", "0644") + ' "$t.gpg" ' + shell.cmd(repo.keyring),
        ),
        timeout_s=300,
        description=f"install the key of {repo.name}",
    )


def stray_sources(state: cudarepo.AptState, repo: SignedRepo) -> list[str]:
    """Source files naming one of the vendor's other repositories, or this one a second time."""
    found: list[str] = []
    for uri, _release, _component, entry in state.targets:
        other = any(uri.startswith(prefix) for prefix in repo.stray)
        ours = uri.startswith(repo.uri.split("$(ARCH)")[0])
        if (other or ours) and entry != repo.list_file and entry not in found:
            found.append(entry)
    return found


def changes(ctx: Context, repo: SignedRepo, lock_timeout_s: int = 600) -> list[Change]:
    """The repository is ready for apt: its key (checked), our source file, the pin, no other
    source for the vendor's repositories, its lists downloaded."""
    state = cudarepo.apt_state(ctx)
    planned: list[Change] = []
    for path in stray_sources(state, repo):
        if not path.startswith("/etc/apt/sources.list.d/"):
            raise ProvisionError(
                f"{ctx.host}: {path} names another source of {repo.name}",
                f"remove that line; provision keeps this source in {repo.list_file}",
            )
        planned.append(move_aside(path, f"another source of {repo.name}"))
    keys = held_keys(ctx, repo)
    if repo.fingerprint not in keys:
        held = ", ".join(k[-8:] for k in keys) or "no key"
        planned.append(
            Change(
                f"install the key {repo.fingerprint[-8:]} of {repo.name} in {repo.keyring} "
                f"(it holds {held}), from {repo.key_url}",
                (install_key(repo),),
            )
        )
    planned += template_file(
        ctx,
        repo.list_template,
        repo.list_file,
        {
            "name": repo.name,
            "keyring": repo.keyring,
            "uri": repo.uri,
            "suite": repo.suite,
            "components": " ".join(repo.components),
        },
    )
    if repo.pin_file:
        planned += template_file(
            ctx,
            repo.pin_template,
            repo.pin_file,
            {"name": repo.name, "origin": repo.origin, "packages": " ".join(repo.pin_packages)},
        )
    if planned or repo.uri_for(ctx.facts.arch) not in state.fetched:
        planned.append(
            Change(f"download the package lists of {repo.name}", (apt_update(lock_timeout_s),))
        )
    return planned
