"""doctor's Slurm rows: does this box's cluster work as the box sees it.

Read by the login user's script where the box has a Slurm client and a slurm.conf (the cluster
step): `scontrol ping` (slurmctld answers this box's munge credentials: a key other than the
controller's, munged down or a clock far off all fail it) and `sinfo -N` (each node's state
and the reason Slurm gives for a drained or down one). What only several boxes together can
show (UIDs that differ, clocks apart) `provision cluster --plan` reports: it reads every box.
"""

from __future__ import annotations

from provision.doctor.finding import Box, Finding

AREA = "slurm"
RESUME = "then `sudo scontrol update nodename={node} state=resume`"
# Slurm's reasons (slurmctld's words) and what fixes them.
REASON_FIXES = (
    ("gres/gpu count reported lower",
     "slurmd on {node} sees fewer GPUs than slurm.conf gives it (driver not loaded, or a card "
     "gone): `provision doctor --host {node}` for the GPUs, `provision cluster` to match "
     "slurm.conf to them, " + RESUME),
    ("Low RealMemory",
     "{node} has less memory than slurm.conf says: `provision cluster` renders the node line "
     "from the box's own counts, " + RESUME),
    ("Low socket*core*thread",
     "{node} has fewer CPUs than slurm.conf says: `provision cluster`, " + RESUME),
    ("Not responding",
     "slurmd or munged is down on {node}, or its munge key is not the controller's: "
     "`provision verify cluster --host {node}`; `provision cluster` repairs both"),
)  # fmt: skip
GOOD_STATES = ("idle", "alloc", "mix", "comp")


def reason_fix(node: str, reason: str) -> str:
    for words, fix in REASON_FIXES:
        if words.lower() in reason.lower():
            return fix.format(node=node)
    return f"`scontrol show node {node}` has the details; " + RESUME.format(node=node)


def slurm(box: Box) -> list[Finding]:
    """slurmctld answers this box; no node is down or drained."""
    data = box.data
    if not data.slurm_ping:
        return []  # no row: not in a cluster
    lines = data.slurm_ping.strip().splitlines()
    exit_line = next((ln for ln in reversed(lines) if ln.startswith("exit=")), "exit=?")
    said = next((ln.strip() for ln in lines if ln.strip() and not ln.startswith("exit=")), "")
    if exit_line != "exit=0":
        return [
            Finding(
                AREA,
                "fail",
                f"slurmctld does not answer this box ({said[:120] or exit_line}): a munge key "
                "other than the controller's, munged or slurmctld down, or the clocks apart",
                "`provision cluster --host <the cluster's group>` copies the controller's key "
                "and starts the daemons; `--plan` first names clock and UID problems",
            )
        ]
    out: list[Finding] = []
    nodes = [ln.split("|", 2) for ln in data.slurm_nodes]
    nodes = [n for n in nodes if len(n) == 3 and n[0]]
    for name, state, reason in nodes:
        if state.rstrip("*") in GOOD_STATES and not state.endswith("*"):
            continue
        why = "" if reason.strip().lower() == "none" else f": {reason.strip()[:160]}"
        out.append(Finding(AREA, "warn", f"node {name} is {state}{why}", reason_fix(name, reason)))
    if not out:
        out.append(
            Finding(AREA, "ok", f"slurmctld answers; {len(nodes)} node(s), none down or drained")
        )
    return out
