"""doctor's reachability rules: a static address, sshd's password and root login, and the
services the steps declare (Step.services): open to the network only where the step's
settings ask for it. Each rule reads a Box and returns its finding(s)."""

from __future__ import annotations

from provision.doctor.finding import Box, Finding, Service

LOOPBACK = ("127.", "::1", "::ffff:127.")
EVERY_ADDRESS = ("*", "0.0.0.0", "::")


def address(box: Box) -> Finding:
    """The default route's address: static, or leased by DHCP (it can move)."""
    data = box.data
    iface = data.default_iface
    if not iface:
        return Finding(
            "address",
            "warn",
            "no default route: the box cannot reach the internet (apt, pip)",
            "configure the network (provision network: network.interface, address, gateway)",
        )
    mine = [a for a in data.addresses if a[0] == iface]
    configured = f" (configured in {', '.join(data.static_config)})" if data.static_config else ""
    if not mine:
        return Finding("address", "skip", f"{iface} has no IPv4 address")
    dynamic = [a for a in mine if a[2]]
    if dynamic:
        return Finding(
            "address",
            "warn",
            f"{dynamic[0][1]} on {iface} is leased by DHCP: the address can change and the "
            "inventory then points elsewhere",
            "give it a static address: network.interface, network.address and "
            "network.gateway, then provision network (or a DHCP reservation on the router)",
        )
    return Finding("address", "ok", f"{mine[0][1]} on {iface} is static{configured}")


def sshd(box: Box) -> Finding:
    """Password login and root login, from sshd -T (or the config files)."""
    data = box.data
    # Both are always there from sshd -T; from the config files only where every file sshd
    # reads before the line that sets it (or, unset, all of them) was readable.
    password = data.sshd.get("passwordauthentication")
    root = data.sshd.get("permitrootlogin")
    problems = []
    if password == "yes":
        problems.append("password login is on")
    if root == "yes":
        problems.append("root may log in with a password")
    unknown = [
        name
        for name, value in (("PasswordAuthentication", password), ("PermitRootLogin", root))
        if value is None
    ]
    if unknown and not problems:
        reason = "sshd's settings were not readable (sshd -T needs root)"
        if data.sshd:  # the config files were read, but sshd reads one the user cannot
            reason = (
                f"sshd's {' and '.join(unknown)} not known: sshd -T needs root and a file "
                "sshd reads is readable by root only"
            )
        return Finding("sshd", "skip", reason, "run doctor as a user with sudo")
    source = f" ({data.sshd_source})"
    if not problems:
        return Finding(
            "sshd", "ok", f"keys only, PermitRootLogin {root}{source}"
        )  # fmt: skip
    return Finding(
        "sshd",
        "warn",
        "; ".join(problems) + ": bots guess passwords all day" + source,
        "put your key on the box (ssh-copy-id), then provision ssh (00-provision.conf: "
        "PasswordAuthentication no, PermitRootLogin prohibit-password)",
    )


def services(box: Box) -> list[Finding]:
    """Each declared service's port: who can reach it."""
    return [service(box, s) for s in box.services]


def service(box: Box, svc: Service) -> Finding:
    """One service's port: nothing there, loopback only, or open (meant or not)."""
    port = svc.port
    mine = [x for x in box.data.listeners if x.port == port]
    if not mine:
        return Finding(svc.title, "ok", f"nothing listens on port {port}")
    open_on = sorted({x.address for x in mine if not x.address.startswith(LOOPBACK)})
    if not open_on:
        return Finding(
            svc.title, "ok", f"port {port} listens on loopback only (use provision tunnel)"
        )
    where = ", ".join(a if a not in EVERY_ADDRESS else f"{a} (every address)" for a in open_on)
    if svc.bind_all:
        return Finding(
            svc.title, "ok", f"port {port} is open on {where}, as {svc.key}.bind_all asks"
        )
    if svc.bind_all is None:  # the step has no such setting: it is not what the step set up
        fix = f"bind {svc.name} to 127.0.0.1 and reach it with provision tunnel"
    else:
        fix = f"{svc.key}.bind_all=false and provision {svc.step}; reach it with provision tunnel"
    return Finding(
        svc.title,
        "warn",
        f"port {port} is open on {where}: anyone on the network can reach it",
        fix,
    )
