"""Downloads overlapped with the installs: one background fetcher per apply run.

Right after the declared reads, the runner asks every selected step what its changes will
download (Step.downloads: packages missing from the facts, an installer URL and sha256) and,
when there is anything, starts ONE command on its own channel that fetches it while the steps
run. Debian packages go to PREFETCH/archives through a private apt state (its own lists,
sources and archives, Debug::NoLocking: it never takes the host's dpkg, lists or archives
locks, so the steps' own apt-get calls never wait for it); a file goes to the path its step
looks at first, only once its sha256 is right. Before a step's `apt-get install` the executor
waits for the fetcher to finish that step's packages (never downloading twice) and hard-links
them into /var/cache/apt/archives, where apt checks each file against its index's hash (a
stale or partial one is fetched again). PREFETCH is removed after a successful run; a failed
run leaves it for the next, which reuses what is already complete. Off with --no-prefetch or
PROVISION_NO_PREFETCH=1.
Wheels come last: once `python3 -m venv` works (a step's apt install gives python3-venv), a
venv under PREFETCH runs each step's `pip download` with its install's options, for the target
CPython (--python-version, --abi, --only-binary), into PREFETCH/wheels/<step> with a PEP 503
page per project; `before` then adds that as the LAST --extra-index-url of the step's pip
installs. Every source stays; pip ranks candidates by version, tag and build tag and among
equals takes the one listed last (a stable sort, then reversed() in its resolver; find-links
would lose that tie): the folder's file wins only against the same file, so the install is
the one it would be without it.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from provision import shell
from provision.step import Context, Download, Step

PREFETCH = "/var/cache/provision/prefetch"
ARCHIVES = "/var/cache/apt/archives"
WAIT_S = 3600
WHEELS = f"{PREFETCH}/wheels"
PYTHON_WAIT_S = 900  # the fetcher's wait for a python with pip (a step installs python3-venv)
# The fetcher's own apt: private lists, sources and caches under PREFETCH, the host's dpkg
# status (so only what is missing is fetched), no locks (every path it writes is its own).
APT_OPTIONS = (
    "-o", "Debug::NoLocking=true",
    "-o", f"Dir::State::Lists={PREFETCH}/lists",
    "-o", f"Dir::Etc::SourceList={PREFETCH}/sources.list",
    "-o", f"Dir::Etc::SourceParts={PREFETCH}/sources.list.d",
    "-o", f"Dir::Cache={PREFETCH}/cache",
    "-o", f"Dir::Cache::Archives={PREFETCH}/archives",
)  # fmt: skip
# Set up the private state: the host's sources, its current lists (an update then fetches only
# what changed), and its folders for apt's sandboxed downloader (_apt).
SETUP = f"""P={PREFETCH}
mkdir -p $P/lists/partial $P/archives/partial $P/cache $P/sources.list.d || exit 70
rm -f $P/sources.list.d/*
cp /etc/apt/sources.list $P/sources.list 2>/dev/null || : > $P/sources.list
for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -e "$f" ] && cp -- "$f" $P/sources.list.d/
done
cp -p /var/lib/apt/lists/*_* $P/lists/ 2>/dev/null
chown -R _apt:root $P/lists/partial $P/archives/partial 2>/dev/null
echo started
"""


def enabled() -> bool:
    """Whether the fetcher may run (--no-prefetch and PROVISION_NO_PREFETCH=1 turn it off)."""
    return os.environ.get("PROVISION_NO_PREFETCH", "") != "1"


@dataclass(frozen=True)
class Item:
    """One unit of the fetcher's work: a step's packages, one file, or a step's wheels."""

    key: str  # apt:<step> | file:<dest> | wheels:<step>
    names: tuple[str, ...] = ()
    download: Download | None = None
    calls: tuple[Download, ...] = ()  # wheels: the step's pip downloads, in order

    def wanted_by(self, command: str) -> bool:
        """Whether a change's command uses what this item fetches (so it waits for it)."""
        if self.key.startswith("file:"):
            return self.key[5:] in command
        if self.key.startswith("wheels:"):
            return any(f"{c.dest} " in command for c in self.calls)
        if "apt-get" not in command or " install " not in command:
            return False
        words = set(command.replace("'", " ").split())
        return any(n in words for n in self.names)


def declared(steps: tuple[Step, ...], ctx: Context) -> tuple[list[Item], list[Download]]:
    """What the steps will download: (items in step order, wheels last; the apt sources)."""
    items: list[Item] = []
    wheels: list[Item] = []  # last: they wait for a python with pip
    sources: list[Download] = []
    seen: set[str] = set()
    for step in steps:
        if step.downloads is None:
            continue
        names: list[str] = []
        calls = []
        for d in step.downloads(ctx):
            if d.kind == "wheels":
                calls.append(d)
            elif d.kind == "apt":
                names += [n for n in d.names if n not in seen]
                seen.update(d.names)
            elif d.kind == "file":
                items.append(Item(f"file:{d.dest}", download=d))
            elif d.kind == "source":
                sources.append(d)
        if names:
            items.append(Item(f"apt:{step.name}", tuple(dict.fromkeys(names))))
        if calls:
            wheels.append(Item(f"wheels:{step.name}", calls=tuple(calls)))
    return items + wheels, sources


# Picks the python that runs pip download: the fetcher's own venv once `python3 -m venv`
# works, else (a conda-only host) an interpreter a step named, once it has pip.
PICK_PYTHON = """ok() { "$1" -m pip --version >/dev/null 2>&1 && py=$1; }
pick() {
  ok $P/venv/bin/python && return; rm -rf $P/venv
  python3 -m venv $P/venv >/dev/null 2>&1 && ok $P/venv/bin/python && return
  for x in "$@"; do ok "$x" && return; done; return 1
}
"""


def wheels_group(item: Item) -> str:
    """One step's `pip download` calls into WHEELS/<step>.part, moved to WHEELS/<step> when
    every call worked; the wheels are for the target CPython only (never a wrong tag)."""
    key = shell.cmd(item.key)
    folder = f"{WHEELS}/{item.key[7:]}"
    part = f"{folder}.part"
    extra = shell.cmd(*dict.fromkeys(c.interpreter for c in item.calls if c.interpreter))
    python = item.calls[0].python
    if python:
        version = shell.cmd(python)
    else:  # the system python3's, which the step's venv will have
        version = "$(python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])')"
    quiet = ("-q", "--disable-pip-version-check", "--no-input", "--no-cache-dir")
    lines = [
        f"echo begin {key}",
        f"rm -rf {folder} {part}; mkdir -p {part}; w=0; py=",
        f"until pick {extra}; do [ $w -ge {PYTHON_WAIT_S} ] && break; sleep 2; w=$((w+2)); done",
        f'V={version}; rc=1; [ -n "$py" ] && rc=0',
    ]
    target = "--python-version $V --implementation cp --abi cp$(echo $V | tr -d .)"
    for n, call in enumerate(item.calls):
        head = shell.cmd("download", *quiet, "--dest", part, "--only-binary=:all:")
        args = shell.cmd(*call.options, "--", *call.names)
        fetched = ' "$@"' if call.with_fetched else ""
        # TMPDIR on disk: pip downloads each file under it first (gigabytes for a CUDA torch),
        # and /tmp is a RAM tmpfs on Debian 13 (pytorch_install.PIP_TMPDIR says why).
        lines.append(f"[ $rc = 0 ] && {{ TMPDIR=/var/tmp $py -m pip {head} {target} {args}"
                     f"{fetched} >$P/log 2>&1; rc=$?; sed 's/^/| /' $P/log; }}")  # fmt: skip
        if n == 0:
            lines.append(f"set -- {part}/*.whl")
    # The index: simple/<normalized name>/index.html links each wheel (PEP 503).
    lines.append(f"""[ $rc = 0 ] && for f in {part}/*.whl; do f=${{f##*/}}
  n=$(echo "${{f%%-*}}" | tr A-Z a-z | sed 's/[-_.][-_.]*/-/g'); mkdir -p {part}/simple/$n
  echo "<a href='../../$f'>$f</a><br>" >> {part}/simple/$n/index.html; done""")
    size = f"$(ls {folder}/*.whl | wc -l) $(cat {folder}/*.whl | wc -c)"
    lines += [
        f"if [ $rc = 0 ] && mv -- {part} {folder}; then echo done {key} {size}",
        f'elif [ -z "$py" ]; then echo fail {key} no python with pip after $w s',
        f"else rm -rf {part}; echo fail {key} pip download exit $rc; fi",
    ]
    return "\n".join(lines) + "\n"


def last_index(command: str, item: Item) -> str:
    """`command` with the item's folder as the last --extra-index-url of each of its pip
    installs (at the end of each: pip tells equal candidates apart by the order of sources)."""
    index = shell.cmd("--extra-index-url", f"file://{WHEELS}/{item.key[7:]}/simple")
    for pip in dict.fromkeys(c.dest for c in item.calls):
        # A pip install ends at the next ` && ` (its words are quoted: none holds one).
        pattern = re.escape(pip) + r" (?:(?! && ).)*"
        command = re.sub(pattern, lambda m: f"{m.group(0)} {index}", command, flags=re.S)
    return command


def apt_group(item: Item, options: tuple[str, ...] = ()) -> str:
    """Fetch one step's packages: those the private lists know (others, such as a repository
    whose keyring a step installs first, are left to the step's own apt-get)."""
    apt_get = shell.cmd("apt-get", "-q", "-y", *APT_OPTIONS, *options)
    apt_cache = shell.cmd("apt-cache", *APT_OPTIONS)
    names = shell.cmd(*item.names)
    key = shell.cmd(item.key)
    return f"""echo begin {key}
set --
for p in {names}; do
  {apt_cache} show --no-all-versions -- "$p" >/dev/null 2>&1 && set -- "$@" "$p"
done
if [ $# -gt 0 ]; then
  {apt_get} -d install --no-install-recommends -- "$@" >$P/log 2>&1; rc=$?
  sed 's/^/| /' $P/log
else rc=0; fi
n=$(ls $P/archives/*.deb 2>/dev/null | wc -l)
b=$(cat $P/archives/*.deb 2>/dev/null | wc -c)
if [ $rc = 0 ]; then echo done {key} $n $b; else echo fail {key} apt-get exit $rc; fi
"""


def file_fetch(item: Item) -> str:
    """Fetch one file to where its step looks first, through a .prefetch file, sha256-checked."""
    d = item.download
    assert d is not None
    part = f"{PREFETCH}/files/{os.path.basename(d.dest)}.part"
    key = shell.cmd(item.key)
    # A stalled transfer gives up (the step then downloads it): never a wait without end.
    curl = shell.cmd("curl", "-fsSL", "--retry", "3", "-Y", "1000", "-y", "60", "-o", part, d.url)
    # A fresh box may have no curl yet (base installs it): apt's own downloader then, which
    # runs as _apt (hence the folder's owner).
    helper = shell.cmd("/usr/lib/apt/apt-helper", "download-file", d.url, part)
    check = shell.pipe(
        shell.cmd("printf", "%s  %s\\n", d.sha256, part), "sha256sum -c --quiet - >/dev/null"
    )
    folder = shell.cmd("mkdir", "-p", "--", os.path.dirname(d.dest) or "/")
    dest = shell.cmd(d.dest)
    return f"""echo begin {key}
mkdir -p $P/files && chown _apt:root $P/files 2>/dev/null
if command -v curl >/dev/null; then get() {{ {curl}; }}; else get() {{ {helper}; }}; fi
if [ -s {dest} ]; then echo done {key} 1 $(wc -c < {dest})
elif {folder} && get >$P/log 2>&1 && {check} && {shell.cmd("mv", "-f", "--", part, d.dest)}
then echo done {key} 1 $(wc -c < {dest})
else sed 's/^/| /' $P/log; rm -f -- {shell.cmd(part)}; echo fail {key} download or sha256 failed
fi
"""


def fetch_command(items: list[Item], sources: list[Download], proxy: str = "") -> str:
    """The fetcher: one shell script, run as root; its first line names it (the transcript
    shows the first line of a stream's command, and a URL may hold a token further on).
    `proxy`: the lab's apt cache (base.apt_proxy), which base configures only once it runs."""
    options = ("-o", f"Acquire::http::Proxy={proxy}") if proxy else ()
    parts = ["# provision prefetch", SETUP]
    for src in sources:
        name = os.path.basename(src.dest)
        parts.append(shell.write_file(src.content, f"{PREFETCH}/sources.list.d/{name}"))
    if any(i.key.startswith("apt:") for i in items):
        update = shell.cmd("apt-get", "-q", *APT_OPTIONS, *options, "update")
        parts.append(f"{update} >$P/log 2>&1 || sed 's/^/| /' $P/log")
    if any(i.key.startswith("wheels:") for i in items):
        parts.append(PICK_PYTHON)
    for item in items:
        if item.key.startswith("wheels:"):
            parts.append(wheels_group(item))
        else:
            parts.append(apt_group(item, options) if item.key[:4] == "apt:" else file_fetch(item))
    parts.append("echo end")
    return shell.cmd("sh", "-c", "\n".join(parts), "provision-prefetch")


def link_command() -> str:
    """Hard-link the prefetched packages into apt's archives (a copy across filesystems)."""
    src = f"{PREFETCH}/archives"
    return (
        f"if [ -d {src} ]; then cp -fl {src}/*.deb {ARCHIVES}/ 2>/dev/null || "
        f"cp -f {src}/*.deb {ARCHIVES}/ 2>/dev/null; fi; true"
    )


CLEANUP = shell.cmd("rm", "-rf", "--", PREFETCH)
LINE_RE = re.compile(r"(begin|done|fail) (\S+)(?: (.*))?")


@dataclass
class Fetcher:
    """The running fetcher: a thread reads its lines; `before` waits for what a command uses."""

    host: str
    stream: object
    items: list[Item]
    log: Callable[[str], None]
    note: Callable[[str], None]  # a line for the progress display
    state: dict[str, str] = field(default_factory=dict)  # key -> begin | done | fail
    detail: dict[str, str] = field(default_factory=dict)
    current: str = ""
    ended: bool = False
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                line = self.stream.readline(1.0)
                if line is None:
                    continue
                if line == "" or line == "end":
                    break
                self._take(line)
        except Exception as exc:  # the connection went away: the steps download themselves
            self.log(f"# prefetch: {exc}")
        with self.cond:
            self.ended = True
            self.seconds = time.monotonic() - self.started
            self.cond.notify_all()
        self.note(self.summary())

    def _take(self, line: str) -> None:
        if line.startswith("| "):
            self.log(shell.redact(f"# prefetch{line}"))
            return
        m = LINE_RE.fullmatch(line)
        if not m:
            return
        verb, key, rest = m.group(1), m.group(2), m.group(3) or ""
        self.log(f"# prefetch {line} (+{time.monotonic() - self.started:.2f}s)")
        with self.cond:
            self.state[key] = verb
            self.detail[key] = rest
            self.current = key if verb == "begin" else ""
            self.cond.notify_all()

    def describe(self) -> str:
        """What it fetches, for the line that says it started."""
        packages = sum(len(i.names) for i in self.items)
        steps = [i.key[4:] for i in self.items if i.key.startswith("apt:")]
        files = sum(i.key.startswith("file:") for i in self.items)
        wheels = [i.key[7:] for i in self.items if i.key.startswith("wheels:")]
        text = f"{packages} packages for {', '.join(steps)}" if steps else ""
        if files:
            text += ("; " if text else "") + f"{files} file{'s' if files > 1 else ''}"
        if wheels:
            text += ("; " if text else "") + f"wheels for {', '.join(wheels)}"
        return text + " (in the background, on its own channel)"

    def summary(self) -> str:
        """One line: what was fetched, how much, in how long."""
        done = [k for k, v in self.state.items() if v == "done"]
        failed = [k for k, v in self.state.items() if v == "fail"]
        apt = [self.detail[k].split() for k in done if k.startswith("apt:")]
        packages, size = (int(apt[-1][0]), int(apt[-1][1])) if apt and len(apt[-1]) == 2 else (0, 0)
        files = [k for k in done if k.startswith("file:")]
        wheels = [self.detail[k].split() for k in done if k.startswith("wheels:")]
        text = f"{packages} packages, {size / 1e6:.0f} MB"
        if files:
            text += f", {len(files)} file{'s' if len(files) > 1 else ''}"
        if wheels:
            counts = [(int(w[0]), int(w[1])) for w in wheels if len(w) == 2]
            mb = sum(b for _n, b in counts) / 1e6
            text += f", {sum(n for n, _b in counts)} wheels ({mb:.0f} MB)"
        text += f" in {self.seconds:.1f}s" if self.ended else ""
        if failed:
            text += f"; not fetched (the step downloads it): {', '.join(failed)}"
        return text

    def before(self, command: str, show: Callable[[str], None]) -> str:
        """Wait until the fetcher has done what `command` uses; the command to run then (with
        the prefetched packages linked into apt's archives first, for an apt-get install)."""
        wanted = [i for i in self.items if i.wanted_by(command)]
        if not wanted:
            return command
        deadline = time.monotonic() + WAIT_S
        shown = ""
        with self.cond:
            while not self.ended and time.monotonic() < deadline:
                pending = [i for i in wanted if self.state.get(i.key) not in ("done", "fail")]
                if not pending:
                    break
                if pending[0].key != shown:  # once per item: the fetcher's own line follows
                    shown = pending[0].key
                    show(f"waiting for the fetcher to finish {shown} ({self.summary()})")
                self.cond.wait(1.0)
        for item in wanted:  # the fetched wheels: the last index of the step's pip installs
            if item.key.startswith("wheels:") and self.state.get(item.key) == "done":
                command = last_index(command, item)
        if any(i.key.startswith("apt:") for i in wanted):
            return shell.and_(link_command(), command)
        return command

    def close(self) -> None:
        """Stop reading (the fetcher ends by itself; a closed channel ends it at its next line)."""
        self.stream.close()
        self.thread.join(timeout=5)


def start(
    remote, steps: tuple[Step, ...], ctx: Context, log: Callable[[str], None], note
) -> Fetcher | None:
    """Start the fetcher when there is anything to fetch and the transport has side channels."""
    if not enabled() or not remote.supports_streams:
        return None
    items, sources = declared(steps, ctx)
    if not items:
        return None
    proxy = getattr(ctx.settings_by_key.get("base"), "apt_proxy", "")
    command = fetch_command(items, sources, proxy)
    for line in shell.redact(command).splitlines():
        log(f"# prefetch script: {line}")
    stream = remote.open_stream(command)
    return Fetcher(ctx.host, stream, items, log, note)
