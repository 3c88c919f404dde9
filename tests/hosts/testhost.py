#!/usr/bin/env python3
"""Disposable Debian 12/13 test hosts for provision: build, boot, reach, throw away.

    python3 tests/hosts/testhost.py up --name box [--kind container] [--release trixie]
        [--set base.x=y] [--rtt-ms 20 [--rate-mb-s 20]] [--no-apt-seed]
        [--lan pvlan --lan-addr 10.77.0.11]
    python3 tests/hosts/testhost.py ssh --name box [--user tester] [CMD ...]
    python3 tests/hosts/testhost.py down --name box
    python3 tests/hosts/testhost.py list
    python3 tests/hosts/testhost.py build [--kind container|vm] [--release bookworm|trixie]

`up` prints the path of an inventory file whose host NAME has every connection variable.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import delay
from common import DEFAULT_RELEASE, RELEASES, STATE, load_host, log, ssh_argv


def kind_module(kind: str):
    """The tier's module (container.py or vm.py), imported only when asked for."""
    if kind == "container":
        import container

        return container
    try:
        import vm
    except ModuleNotFoundError as e:
        if e.name != "vm":
            raise
        sys.exit("the vm tier is not available in this checkout (tests/hosts/vm.py is missing)")
    return vm


def stop_kept_index(name: str) -> None:
    """Stop the wheel index `./demo --keep` left running for this host (its pid file)."""
    pid_file = STATE / name / "pkgindex.pid"
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"pkgindex.py" in cmdline:  # the pid is still ours, not a recycled one
        os.kill(pid, 15)
    pid_file.unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("up", help="build (cached) and boot a host; print its inventory path")
    p.add_argument("--name", required=True)
    p.add_argument("--kind", choices=("container", "vm"), default="container")
    p.add_argument("--release", choices=RELEASES, default=DEFAULT_RELEASE,
                   help="the Debian suite: bookworm (12, the default) or trixie (13)")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra [testhosts:vars] line")  # fmt: skip
    p.add_argument("--rtt-ms", type=float, help="reach it through a delay line (delay.py) "
                   "adding this round trip: the inventory's ansible_port is the line's")  # fmt: skip
    p.add_argument("--rate-mb-s", type=float, help="with --rtt-ms: cap each direction's rate")
    p.add_argument("--no-apt-seed", action="store_true",
                   help="container: no cached .debs in the host (apt really downloads)")  # fmt: skip
    p.add_argument("--lan", metavar="NAME", help="on this LAN (lan.py; made if missing): a "
                   "container in a network namespace of its own, a VM with a NIC on it")  # fmt: skip
    p.add_argument("--lan-addr", metavar="ADDR", help="with --lan: its address, e.g. 10.77.0.11")
    p = sub.add_parser("down", help="stop a host and delete its state")
    p.add_argument("--name", required=True)
    p = sub.add_parser("ssh", help="ssh into a host")
    p.add_argument("--name", required=True)
    p.add_argument("--user", default="tester")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    sub.add_parser("list", help="running hosts")
    p = sub.add_parser("build", help="build the cached image only")
    p.add_argument("--kind", choices=("container", "vm"), default="container")
    p.add_argument("--release", choices=RELEASES, default=DEFAULT_RELEASE)
    args = parser.parse_args()

    if args.command == "up":
        bad = [item for item in args.set if "=" not in item]
        if bad:
            parser.error(f"--set wants KEY=VALUE, got {bad[0]!r}")
        if args.rate_mb_s and args.rtt_ms is None:
            parser.error("--rate-mb-s needs --rtt-ms (0 for a rate cap alone)")
        if args.no_apt_seed and args.kind != "container":
            parser.error("--no-apt-seed is for container hosts only")
        if bool(args.lan) != bool(args.lan_addr):
            parser.error("--lan and --lan-addr go together")
        extra = dict(item.split("=", 1) for item in args.set)
        module = kind_module(args.kind)
        options = {"release": args.release}
        if args.no_apt_seed:
            options["seed_apt"] = False
        if args.lan:
            options.update(lan=args.lan, lan_addr=args.lan_addr)
        host = module.up(args.name, extra_vars=extra, **options)
        if args.rtt_ms is not None:
            try:
                port = delay.attach(host, args.rtt_ms, args.rate_mb_s)
            except BaseException:
                module.down(args.name)
                raise
            log(f"{args.name}: through a delay line on 127.0.0.1:{port} ({args.rtt_ms:g} ms RTT)")
        print(host.inventory)
    elif args.command == "down":
        stop_kept_index(args.name)
        delay.detach(STATE / args.name)
        path = STATE / args.name / "host.json"
        kind = load_host(args.name).kind if path.exists() else "container"
        kind_module(kind).down(args.name)
    elif args.command == "ssh":
        host = load_host(args.name)
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        os.execvp("ssh", [*ssh_argv(host, args.user), *cmd])
    elif args.command == "list":
        for path in sorted(STATE.glob("*/host.json")):
            h = load_host(path.parent.name)
            print(f"{h.name:<16} {h.kind:<10} 127.0.0.1:{h.port:<6} {h.inventory}")
    elif args.command == "build":
        print(kind_module(args.kind).build(args.release))
    return 0


if __name__ == "__main__":
    sys.exit(main())
