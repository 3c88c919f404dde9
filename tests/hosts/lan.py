#!/usr/bin/env python3
"""Boxes on a LAN: container test hosts with a network of their own, so that services on fixed
ports (slurmctld 6817, slurmd 6818 on every box) do not collide as they would on the shared one.

A LAN NAME is a network namespace `pv-NAME` holding a bridge `br0` with the subnet's .1
(default 10.77.0.1/24). A host joins it with a namespace `pv-HOST` of its own (nspawn boots
inside it: --network-namespace-path), a veth pair created there (`host0`, ADDR/24, default
route via .1) whose other end is enslaved to the bridge. No address, route or interface is ever
put in the root namespace; it reaches the boxes through processes that straddle two
namespaces (a socket keeps the namespace it was created in):

- per host, a relay (delay.py --netns): listens on 127.0.0.1:PORT here, then enters the LAN
  and connects to ADDR:22, so ssh, inventories and known_hosts are the usual 127.0.0.1:PORT;
- per LAN, an apt proxy at http://GATEWAY:3142 (aptproxy.Handler: a STAND-IN forwarding
  proxy, it counts requests and caches nothing): it binds inside the LAN, then returns to
  the root namespace, so its connections to the mirror are made from here.

State: STATE/.lan-NAME/ (lan.json, hosts, proxy.log of requests); each member's own
STATE/HOST/lan.json and relay.json. Every host on a LAN has the others in /etc/hosts.
A VM (vm.py) joins with a tap on the bridge instead (enlist, announce, forget): its own NIC,
configured over SSH; its /etc/hosts is edited over SSH too.

    python3 tests/hosts/lan.py create NAME [--subnet 10.77.0.0/24]   # prints lan.json
    python3 tests/hosts/lan.py destroy NAME                          # members taken down too
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import delay
from common import STATE, log, setns

NETNS = Path("/run/netns")
PROXY_PORT = 3142  # apt-cacher-ng's, as a lab's cache would use
# No DNS on a LAN (names are in /etc/hosts; apt resolves through the proxy): nspawn boots LAN
# hosts with --resolv-conf=off so this stays.
RESOLV_CONF = "# test LAN (lan.py): no DNS; names are in /etc/hosts\nnameserver 127.0.0.1\n"
SSH_PORT = 22  # sshd's own port inside a LAN host: the LAN is its network, nothing collides


def netns(name: str) -> str:
    """The namespace name for a LAN or a host: `pv-NAME` (a file name, not an interface)."""
    return f"pv-{name}"


def lan_dir(name: str) -> Path:
    """The LAN's state folder (a dot folder: `testhost.py list` sees hosts only)."""
    return STATE / f".lan-{name}"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """iproute2, for the namespaces and links (errors raise with ip's own message)."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def info(name: str) -> dict:
    """The LAN's record (lan.json): netns, subnet, gateway, proxy url and pid."""
    return json.loads((lan_dir(name) / "lan.json").read_text())


def create(name: str = "pvlan", subnet: str = "10.77.0.0/24") -> dict:
    """Make the LAN (namespace, bridge at .1, apt proxy) unless it is there; its record.

    Idempotent: a LAN whose namespace is there is returned as it is (its proxy started again
    if it died: the members stay connected); a half-made one (no record) is made again.
    """
    net = ipaddress.ip_network(subnet)
    gateway = str(next(net.hosts()))
    folder = lan_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(name):
        with contextlib.suppress(OSError, ValueError):
            record = info(name)
            if (NETNS / record["netns"]).exists():
                if not _is_our_proxy(record):
                    record.update(_start_proxy(name, record["netns"], record["gateway"]))
                    (folder / "lan.json").write_text(json.dumps(record, indent=2))
                return record
        if (STATE / name / "host.json").exists():
            raise ValueError(f"{name!r} is a test host's name: its namespace would be pv-{name}")
        _teardown(name)
        ns = netns(name)
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", ns, "addr", "add", f"{gateway}/{net.prefixlen}", "dev", "br0")
        _ip("-n", ns, "link", "set", "br0", "up")
        record = {"name": name, "netns": ns, "subnet": str(net), "gateway": gateway}
        record.update(_start_proxy(name, ns, gateway))
        (folder / "lan.json").write_text(json.dumps(record, indent=2))
        (folder / "hosts").write_text("")  # no member survives its LAN's namespace
    log(f"LAN {name}: {net} in netns {ns}, apt proxy {record['proxy']}")
    return record


def destroy(name: str) -> None:
    """Take the LAN's remaining hosts down, stop its proxy, delete its namespace. Idempotent."""
    for _addr, host in _members(name):
        _tier(host).down(host)
    with _locked(name):
        _teardown(name)
    with contextlib.suppress(OSError):
        for path in lan_dir(name).iterdir():
            path.unlink()
        lan_dir(name).rmdir()


def _teardown(name: str) -> None:
    """Stop the proxy (by its recorded PID, if still ours) and delete the namespace."""
    with contextlib.suppress(OSError, ValueError):
        record = info(name)
        if _is_our_proxy(record):
            _stop_pid(record["proxy_pid"])
    if (NETNS / netns(name)).exists():
        _ip("netns", "del", netns(name))


@contextlib.contextmanager
def _locked(name: str):
    """The LAN's lock: hosts joining at once must each see the others' /etc/hosts lines."""
    lan_dir(name).mkdir(parents=True, exist_ok=True)
    with open(lan_dir(name) / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _tier(host: str):
    """The member's tier module: a VM's state has its disk (container.down must not run there).
    Imported here, not at the top: both import this module."""
    if (STATE / host / "disk.qcow2").exists():
        import vm

        return vm
    import container

    return container


def _tell(member: str, host: str, line: str | None) -> None:
    """Update a running member's /etc/hosts for HOST (see _edit_hosts): a container's through
    its overlay mount, a VM's over SSH."""
    if (STATE / member / "rootfs").is_dir():
        _edit_hosts(STATE / member / "rootfs/etc/hosts", host, line)
    elif (STATE / member / "disk.qcow2").exists():
        _tier(member).edit_hosts(member, host, line)


def _check_addr(lan: str, record: dict, addr: str) -> None:
    """ADDR must be in the LAN's subnet and not its gateway (the bridge's own)."""
    net = ipaddress.ip_network(record["subnet"])
    if ipaddress.ip_address(addr) not in net or addr == record["gateway"]:
        raise ValueError(f"{addr} is not a host address of LAN {lan} ({net}, gateway .1)")


def _members(name: str) -> list[tuple[str, str]]:
    """(address, host) of each host on the LAN, from its `hosts` file."""
    try:
        text = (lan_dir(name) / "hosts").read_text()
    except OSError:
        return []
    return [tuple(line.split()) for line in text.splitlines() if line.strip()]


# --- a host on the LAN (container.up / container.down) -------------------------------------------


def veth(host: str) -> str:
    """The LAN end of a host's veth pair: at most 15 characters (IFNAMSIZ), one per host."""
    name = f"ve-{host}"
    return name if len(name) <= 15 else f"ve-{hashlib.sha256(host.encode()).hexdigest()[:12]}"


def join(lan: str, host: str, addr: str, state: Path, rootfs: Path) -> dict:
    """Before the host boots: its namespace and veth, its name and the LAN's in /etc/hosts
    (the new line is also appended to the running members' /etc/hosts, through their overlay
    mounts), /etc/hostname, and sshd's ListenAddress. Recorded in state/lan.json first, so
    leave() can undo a half-done join."""
    record = info(lan)
    net = ipaddress.ip_network(record["subnet"])
    _check_addr(lan, record, addr)
    if lan_dir(host).exists():  # its pv-HOST would be that LAN's namespace (deleted below)
        raise ValueError(f"host {host!r} has a LAN's name: both would be the namespace pv-{host}")
    ns, end = netns(host), veth(host)
    mine = {"lan": lan, "addr": addr, "netns": ns, "veth": end, "lan_netns": record["netns"]}
    (state / "lan.json").write_text(json.dumps(mine))
    with _locked(lan):
        members = [(a, h) for a, h in _members(lan) if h != host]
        taken = [h for a, h in members if a == addr]
        if taken:
            raise ValueError(f"{addr} is {taken[0]}'s on LAN {lan}")
        if (NETNS / ns).exists():  # left by a crash of this same host
            _ip("netns", "del", ns)
        _ip("-n", record["netns"], "link", "del", end, check=False)
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        # Made inside the host's namespace, peer straight into the LAN's: never in ours.
        _ip("-n", ns, "link", "add", "host0", "type", "veth", "peer", "name", end,
            "netns", record["netns"])  # fmt: skip
        _ip("-n", record["netns"], "link", "set", end, "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"{addr}/{net.prefixlen}", "dev", "host0")
        _ip("-n", ns, "link", "set", "host0", "up")
        _ip("-n", ns, "route", "add", "default", "via", record["gateway"])
        members.append((addr, host))
        (lan_dir(lan) / "hosts").write_text("".join(f"{a} {h}\n" for a, h in members))
        etc = rootfs / "etc"
        (etc / "hostname").write_text(f"{host}\n")
        # No `127.0.1.1 NAME`: a cluster daemon must find its own name at its LAN address.
        base = [ln for ln in (etc / "hosts").read_text().splitlines() if "127.0.1.1" not in ln]
        (etc / "hosts").write_text("\n".join(base + [f"{a} {h}" for a, h in members]) + "\n")
        for _a, other in members[:-1]:
            _tell(other, host, f"{addr} {host}")
    # The build's copy of this machine's resolv.conf names a server the LAN has no route to:
    # each lookup that reached DNS waited 2 x 5 s for nothing. Loopback refuses at once.
    (etc / "resolv.conf").unlink(missing_ok=True)
    (etc / "resolv.conf").write_text(RESOLV_CONF)
    conf = etc / "ssh/sshd_config.d/10-testhost.conf"
    # Loopback too (its own): `ssh localhost` inside works as on a real box.
    listen = "ListenAddress 127.0.0.1\n"
    conf.write_text(conf.read_text().replace(listen, f"{listen}ListenAddress {addr}\n"))
    return mine


def relay(state: Path) -> int:
    """Start the host's relay (127.0.0.1:PORT here -> ADDR:22 in the LAN); returns PORT."""
    mine = json.loads((state / "lan.json").read_text())
    record = delay.start_process(
        f"{mine['addr']}:{SSH_PORT}", state / "relay.json", netns=str(NETNS / mine["lan_netns"])
    )
    return record["port"]


def leave(state: Path) -> None:
    """After the host stopped: its relay, veth, namespace and /etc/hosts lines go. Idempotent
    (no state/lan.json: not a LAN host, nothing to do)."""
    delay.stop_process(state / "relay.json")
    try:
        mine = json.loads((state / "lan.json").read_text())
    except (OSError, ValueError):
        return
    if (NETNS / mine["lan_netns"]).exists():
        _ip("-n", mine["lan_netns"], "link", "del", mine["veth"], check=False)
    if (NETNS / mine["netns"]).exists():
        _ip("netns", "del", mine["netns"], check=False)
    forget(mine["lan"], state.name)
    (state / "lan.json").unlink(missing_ok=True)


def forget(lan: str, host: str) -> None:
    """Take HOST off the LAN's member list and the others' /etc/hosts. Idempotent."""
    if not lan_dir(lan).is_dir():
        return
    with _locked(lan):
        members = [(a, h) for a, h in _members(lan) if h != host]
        (lan_dir(lan) / "hosts").write_text("".join(f"{a} {h}\n" for a, h in members))
        for _a, other in members:
            _tell(other, host, None)


# --- a VM on the LAN (vm.up / vm.down): a tap on br0, the guest configured over SSH ---------


def enlist(lan: str, host: str, addr: str) -> dict:
    """Reserve ADDR for a member that brings its own link (a VM's tap); the LAN's record.
    Running members hear of it only from announce(), once it is up and configured."""
    record = info(lan)
    _check_addr(lan, record, addr)
    with _locked(lan):
        members = [(a, h) for a, h in _members(lan) if h != host]
        taken = [h for a, h in members if a == addr]
        if taken:
            raise ValueError(f"{addr} is {taken[0]}'s on LAN {lan}")
        members.append((addr, host))
        (lan_dir(lan) / "hosts").write_text("".join(f"{a} {h}\n" for a, h in members))
    return record


def announce(lan: str, host: str, configure) -> None:
    """Under the LAN's lock (no member joins or leaves meanwhile): configure(members) sets the
    enlisted HOST up from the member list, then every other member gets HOST's line."""
    with _locked(lan):
        members = _members(lan)
        configure(members)
        line = next(f"{a} {h}" for a, h in members if h == host)
        for _a, other in members:
            if other != host:
                _tell(other, host, line)


def _edit_hosts(path: Path, host: str, line: str | None) -> None:
    """Drop the host's line from a running member's /etc/hosts and add `line` (if any): written
    through that member's overlay mount, so it sees the change at once."""
    with contextlib.suppress(OSError):
        lines = [ln for ln in path.read_text().splitlines() if ln.split()[1:2] != [host]]
        path.write_text("\n".join([*lines, *([line] if line else [])]) + "\n")


# --- the apt proxy -----------------------------------------------------------------------------


def requests(name: str) -> list[tuple[str, str]]:
    """The (method, url) of each request the LAN's proxy was sent (from its proxy.log)."""
    try:
        text = (lan_dir(name) / "proxy.log").read_text()
    except OSError:
        return []
    return [tuple(line.split(" ", 1)) for line in text.splitlines() if " " in line]


def _start_proxy(name: str, ns: str, gateway: str) -> dict:
    """Start `lan.py proxy` in a session of its own; wait for its `ready` line."""
    folder = lan_dir(name)
    argv = [sys.executable, __file__, "proxy", "--netns", str(NETNS / ns)]
    argv += ["--listen", f"{gateway}:{PROXY_PORT}", "--log", str(folder / "proxy.log")]
    with open(folder / "proxy.err", "ab") as err:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
            start_new_session=True,  # outlives `testhost.py up`; destroy() stops it by PID
        )  # fmt: skip
    first = proc.stdout.readline().decode().split()
    proc.stdout.close()
    if first[:1] != ["ready"]:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"LAN {name}: the apt proxy did not start; see {folder / 'proxy.err'}")
    return {"proxy": first[1], "proxy_pid": proc.pid}


def _is_our_proxy(record: dict) -> bool:
    """Whether the recorded proxy PID is still this LAN's `lan.py proxy` (PIDs get reused)."""
    try:
        cmdline = Path(f"/proc/{record['proxy_pid']}/cmdline").read_bytes().split(b"\0")
    except (OSError, KeyError):
        return False
    want = str(NETNS / record["netns"]).encode()
    return b"proxy" in cmdline and want in cmdline and not delay._zombie(record["proxy_pid"])


def _stop_pid(pid: int) -> None:
    """SIGTERM a process we started, SIGKILL after 5 s; reap it when it is our child."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in range(50):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if delay._zombie(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class _Requests:
    """Handler.seen for a proxy in its own process: each request is a proxy.log line."""

    def __init__(self, path: str) -> None:
        self.file = open(path, "a", buffering=1)  # noqa: SIM115 (open for the process's life)
        self.lock = threading.Lock()

    def append(self, item: tuple[str, str]) -> None:
        with self.lock:
            self.file.write(f"{item[0]} {item[1]}\n")


def serve_proxy(netns_path: str, listen: tuple[str, int], log_path: str) -> None:
    """The proxy process: bind inside the LAN, come back to the root namespace, serve.

    Only the listening socket is the LAN's; the handler threads (started from this thread,
    back in the root namespace) connect to the mirror from here, where the route is.
    """
    import http.server
    import socketserver

    import aptproxy

    handler = type("LanHandler", (aptproxy.Handler,), {"seen": _Requests(log_path)})
    home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    setns(netns_path)
    try:  # the socket is created here, in the LAN: that alone fixes its namespace
        server = http.server.ThreadingHTTPServer(listen, handler, bind_and_activate=False)
    finally:
        setns(home)
        os.close(home)
    # Plain bind + listen: HTTPServer's own server_bind would look GATEWAY's name up (DNS).
    socketserver.TCPServer.server_bind(server)
    server.server_activate()
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"ready http://{listen[0]}:{server.server_address[1]}", flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """The CLI: create/destroy a LAN; `proxy` is the proxy process create() starts."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("create", help="make the LAN (idempotent); print its record")
    p.add_argument("name")
    p.add_argument("--subnet", default="10.77.0.0/24")
    sub.add_parser("destroy", help="take its hosts down, delete the LAN").add_argument("name")
    p = sub.add_parser("proxy", help="(internal) the LAN's apt proxy process")
    p.add_argument("--netns", required=True)
    p.add_argument("--listen", type=delay._address, required=True)
    p.add_argument("--log", required=True)
    args = parser.parse_args(argv)
    if args.command == "create":
        print(json.dumps(create(args.name, args.subnet), indent=2))
    elif args.command == "destroy":
        destroy(args.name)
    else:
        serve_proxy(args.netns, args.listen, args.log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
