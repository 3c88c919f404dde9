"""The background fetcher on a real host that really downloads (no apt seed): a fresh
`provision all` fetches base's packages through the fetcher's private apt state, and apt's own
words in the transcript ("Need to get 0 B/...") say the install took them from the prefetched
files; a second run starts no fetcher and changes nothing. The fetcher's apt takes none of the
host's locks, and a stale prefetched file is fetched again by apt (it checks each file's hash).
TensorBoard's wheels are fetched in the same run (once base's apt install gives python3-venv)
and its pip install takes them from the fetcher's folder (its last index); pip's own --report
shows that it picks those files, the very ones it would take from PyPI without them.

One container for the module; one fresh `provision all` (about a minute).
"""

from __future__ import annotations

import json
import re

import pytest
from common import ssh

from hostrun import booted, provision_runner
from provision import prefetch
from provision.step import Download
from provision.steps import tensorboard

pytestmark = pytest.mark.container
# Holds dpkg's two locks as a concurrent `apt-get install` would (fcntl locks), then runs $1.
HOLD_DPKG_LOCKS = """import fcntl, subprocess, sys
held = [open(p, "w") for p in ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock")]
for f in held:
    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
sys.exit(subprocess.run(["sh", "-c", sys.argv[1]], timeout=600).returncode)
"""


@pytest.fixture(scope="module")
def fresh(require_tier, tmp_path_factory):
    """A fresh host after one `provision all`: (host, transcript text, provision, log dir)."""
    for host in booted("container", require_tier, seed_apt=False):
        logs = tmp_path_factory.mktemp("prefetch") / "logs"
        provision = provision_runner(host, logs)
        first = provision("all", "--host", host.name, env={"PROVISION_STRICT_READS": "1"})
        text = newest(logs).read_text()
        yield host, text, first.stdout, provision, logs


def newest(logs):
    return max(logs.glob("*.log"), key=lambda p: p.stat().st_mtime_ns)


def test_base_packages_come_from_the_fetcher(fresh):
    host, text, stdout, _provision, _logs = fresh
    assert re.search(r"prefetch +started +\d+ packages for base", stdout), stdout
    assert re.search(r"prefetch +done +\d+ packages, \d+ MB", stdout), stdout
    done = re.search(r"# prefetch done apt:base (\d+) (\d+)", text)
    assert done and int(done.group(1)) > 10, "the fetcher fetched base's packages"
    # apt-get install, after the fetcher finished, found every file in its archives already.
    install = text.index("apt-get -y -q -o DPkg::Lock::Timeout=600", done.end())
    need = re.search(r"Need to get (\S+ \S+)/(\S+ \S+) of archives", text[install:])
    assert need and need.group(1) == "0 B", need and need.group(0)
    # The host agrees: apt installed build-essential in that run, and the fetcher's folder is
    # gone after the successful run.
    history = ssh(host, "cat /var/log/apt/history.log").stdout
    assert re.search(r"Commandline: apt-get .* install .*build-essential", history)
    assert ssh(host, f"test -e {prefetch.PREFETCH}", check=False).returncode == 1


def test_a_second_run_starts_no_fetcher_and_changes_nothing(fresh):
    host, _text, _stdout, provision, logs = fresh
    again = provision("all", "--host", host.name, "--plan", "--detailed-exitcode")
    assert "prefetch" not in again.stdout
    provision("all", "--host", host.name)
    text = newest(logs).read_text()
    assert "prefetch" not in text
    assert re.search(r"# [123] commands, [\d.]+s\s*$", text), text[-300:]


def test_the_fetchers_apt_takes_none_of_the_hosts_locks(fresh):
    """While dpkg's locks are held (as by a running apt-get install), the fetcher's download
    still runs to the end: it neither waits for nor takes them (so it blocks no install)."""
    host = fresh[0]
    item = prefetch.Item("apt:lock-test", ("hello",))
    script = prefetch.fetch_command([item], [])
    held = ssh(
        host, f"python3 -c {shlex_quote(HOLD_DPKG_LOCKS)} {shlex_quote(script)}", check=False
    )
    assert held.returncode == 0, held.stdout + held.stderr
    assert "done apt:lock-test" in held.stdout, held.stdout
    assert "lock" not in held.stdout.lower().replace("lock-test", ""), held.stdout
    assert ssh(host, f"ls {prefetch.PREFETCH}/archives/").stdout.count("hello_") == 1


def test_a_stale_prefetched_file_is_fetched_again_by_apt(fresh):
    """The link step hands apt whatever is in the folder; apt checks its hash and downloads a
    file that is not the one its index names (here: cut short)."""
    host = fresh[0]
    archives = f"{prefetch.PREFETCH}/archives"
    ssh(host, f'f=$(ls {archives}/hello_*.deb) && truncate -s 1000 "$f"')
    install = prefetch.link_command() + " && apt-get install -y --no-install-recommends hello"
    out = ssh(host, install).stdout
    assert re.search(r"Get:\d+ \S+ bookworm/main amd64 hello", out), out
    assert ssh(host, "hello").stdout.strip() == "Hello, world!"
    ssh(host, f"rm -rf {prefetch.PREFETCH}")


def test_tensorboards_wheels_come_from_the_fetcher(fresh):
    host, text, stdout, _provision, _logs = fresh
    done = re.search(r"# prefetch done wheels:tensorboard (\d+) (\d+)", text)
    assert done and int(done.group(1)) >= 5, "the fetcher fetched TensorBoard and its deps"
    assert re.search(r"prefetch +done +.*, \d+ wheels \(\d+ MB\)", stdout), stdout
    folder = f"{prefetch.WHEELS}/tensorboard"
    index = f"--extra-index-url file://{folder}/simple"
    install = text.index(f"{tensorboard.PIP_INSTALL} -q", done.end())
    command = text[install : text.index("\n# exit", install)]
    assert command.count(index) == 2 and "\n# exit 0" in text[install:].split("\n$ ")[0]
    # pip itself, with and without the folder: the same files, the folder's on a tie.
    s = tensorboard.Settings()
    call = Download("wheels", ("pip", *tensorboard.requirements(s)), dest=tensorboard.PIP_INSTALL,
                    options=tuple(tensorboard.pip_options(s)))  # fmt: skip
    script = prefetch.fetch_command([prefetch.Item("wheels:tensorboard", calls=(call,))], [])
    assert "done wheels:tensorboard" in ssh(host, script).stdout
    reports = []
    for last in ((), index.split()):
        report = " ".join([tensorboard.PIP_INSTALL, "--dry-run", "--ignore-installed", "-q",
                           "--report", "-", *call.options, *call.names, *last])  # fmt: skip
        installs = json.loads(ssh(host, report).stdout)["install"]
        reports.append({i["download_info"]["url"].rsplit("/", 1)[1].split("#")[0]:
                        i["download_info"]["url"] for i in installs})  # fmt: skip
    assert sorted(reports[0]) == sorted(reports[1]), "the same wheels with the folder"
    assert all(u.startswith(f"file://{folder}/") for u in reports[1].values()), reports[1]
    assert not any(u.startswith("file:") for u in reports[0].values()), reports[0]
    ssh(host, f"rm -rf {prefetch.PREFETCH}")


def shlex_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
