"""bench/run.py reads what provision managed from a transcript (to give Ansible and pyinfra the
same files): here a real batch of file-state reads runs under /bin/sh on real files, is
written as the transcript writes it, and the bench must find each file with its real mode."""

from __future__ import annotations

import getpass
import importlib.util
import subprocess
from pathlib import Path

from provision.facts import files, reads
from provision.facts.reads import Read

_SPEC = importlib.util.spec_from_file_location(
    "bench_run", Path(__file__).resolve().parents[2] / "bench" / "run.py"
)
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


def test_the_bench_finds_each_managed_file_in_a_batch(tmp_path):
    made = {}
    for name, mode in (("a.conf", 0o644), ("b.service", 0o640)):
        path = tmp_path / name
        path.write_text("x\n")
        path.chmod(mode)
        made[str(path)] = format(mode, "o")
    wanted = [files.read(p, False) for p in made] + [Read("systemctl --version || true")]
    nonce = reads.new_nonce()
    script = reads.batch_script(wanted, "root", nonce)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout
    transcript = tmp_path / "host.log"
    transcript.write_text(f"$ \n# exit 0 in 0.1s\n$ sudo {script}# exit 0 in 0.3s\n{out}")
    me = getpass.getuser()
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True).stdout.strip()
    assert bench.managed_files(transcript) == [(p, m, me, group) for p, m in made.items()]
    kinds = bench.command_breakdown(transcript)
    assert kinds == {
        "facts (one batched script)": 1,
        "declared reads (one batch: 3 reads, 2 of them file states)": 1,
    }
