"""expose.check on recorded facts, every read declared and answered from a FakeRemote's table
(strict: a read the step does not declare fails): the tunnel key made on the box, the unit
file, the relay's authorized_keys line, the relay host key, WireGuard's config and keys, and
the settings that are refused (exit 2) before any host is contacted. The relay side runs
through the runner on the relay host: planned, applied, checked again."""

import dataclasses
from pathlib import Path

import pytest

from fakes import FakeRemote
from provision import keypair, relay
from provision.changes import Restart, Run, Upload
from provision.config import HostConfig, build_settings
from provision.errors import ConfigError, ProvisionError
from provision.facts import parse_facts
from provision.inventory import Value
from provision.output import Reporter
from provision.remote import Connection
from provision.step import Context, UndeclaredRead
from provision.steps import expose, ssh
from provision.templates import render, sha256

DATA = Path(__file__).parent.parent / "data" / "facts"
PUBLIC = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOv7Y0hQ1wq4c3i2G3r9bR0lJ9qv0w3bH0Yt0cX1dE2f provision-expose@box"
RELAY_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq0pT7z3Y6l8m9n0o1p2q3r4s5t6u7v8w9x0y1z2A3B"
WG_PEER = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
UNIT_VARS = {
    "relay_target": "tunnel@relay.example.org",
    "relay_port": 22,
    "remote_port": 2222,
    "listen": "127.0.0.1",
    "local_port": 22,
    "bind_public": False,
    "known_hosts": expose.KNOWN_HOSTS,
    "key": expose.KEY,
}
WG_VARS = {
    "address": "10.8.0.2/24",
    "listen_port": 0,
    "private_key": expose.WG_PRIVATE,
    "peer_public_key": WG_PEER,
    "peer_endpoint": "vpn.example.org:51820",
    "peer_allowed_ips": ["10.8.0.0/24"],
    "persistent_keepalive": 25,
}
TEMPLATE_EXAMPLES = {
    "expose/provision-expose.service.j2": UNIT_VARS,
    "expose/wg0.conf.j2": WG_VARS,
}
TUNNEL = expose.Settings(
    method="reverse-tunnel",
    relay="tunnel@relay.example.org",
    relay_host_key=RELAY_KEY,
)
WIREGUARD = expose.Settings(
    method="wireguard",
    address="10.8.0.2/24",
    peer_public_key=WG_PEER,
    peer_endpoint="vpn.example.org:51820",
    peer_allowed_ips=("10.8.0.0/24",),
)


def check(remote, s, facts="debian-12-nspawn.txt", relay_host=None):
    """expose.check as the runner runs it: the step's declared reads gathered in one batch
    (answered from the remote's table), strict, so an undeclared read is UndeclaredRead."""
    f = parse_facts((DATA / facts).read_text())
    settings = {"expose": s, "ssh": ssh.Settings()}
    if relay_host is not None:
        settings[relay.RELAY_HOST] = relay_host
    ctx = Context("box", f, settings, None, gathered={}, strict=True)
    ctx.gathered = remote.read_all(expose.STEP.reads(ctx), "root")
    return expose.check(ctx)


def pair(private: str, mode="600", public: str = "", key: str = "") -> str:
    """The key-pair read where both files exist: `stat -c '%a %U %s %n'` of each, then the
    public key from its file."""
    wireguard = private == expose.WG_PRIVATE
    public = public or (expose.WG_PUBLIC if wireguard else f"{private}.pub")
    key = key or ("Pub1Key=" if wireguard else PUBLIC)
    return f"{mode} root 411 {private}\n644 root 97 {public}\n{keypair.PUBLIC_MARK}\n{key}\n"


NO_PAIR = f"{keypair.PUBLIC_MARK}\n"  # neither half exists: stat prints nothing


def file_is(remote, path, content: bytes, mode="644"):
    return remote.on(rf"sha256sum -- {path}", f"{mode} root root\n{sha256(content)}  x\n")


def tunnel_host(unit_vars=UNIT_VARS, key_mode="600"):
    """A box where the tunnel is set up as the settings ask (the key exists)."""
    r = FakeRemote().on(r"%a %U %s %n'\S* -- /etc/provision/expose", pair(expose.KEY, key_mode))
    known = f"relay.example.org {RELAY_KEY}\n".encode()
    file_is(r, expose.KNOWN_HOSTS, known)
    file_is(r, "/etc/systemd/system/provision-expose.service", unit(unit_vars))
    return r.on(r"systemctl show", "UnitFileState=enabled\nActiveState=active\n")


def unit(variables=UNIT_VARS) -> bytes:
    return render("expose/provision-expose.service.j2", **variables)


def test_expose_method_none_changes_nothing():
    assert check(FakeRemote(), expose.Settings()) == []


def test_expose_fresh_box_generates_the_key_on_the_box_and_writes_the_unit():
    r = FakeRemote().on(r"%a %U %s %n'\S* -- /etc/provision/expose", NO_PAIR)
    r.on(r"sha256sum --", (1, "")).on(r"systemctl show", "UnitFileState=\nActiveState=inactive\n")
    changes = check(r, TUNNEL)
    assert [c.summary.split(" (")[0] for c in changes] == [
        f"generate the tunnel key {expose.KEY} on the box",
        f"write {expose.KNOWN_HOSTS}",
        "write /etc/systemd/system/provision-expose.service",
        "enable provision-expose.service at boot",
        "start provision-expose.service",
    ]
    generate = changes[0].actions[0]
    assert isinstance(generate, Run)
    assert (
        "ssh-keygen -q -t ed25519 -N '' -f /etc/provision/expose/id_ed25519 "
        "-C provision-expose@box" in generate.command
    )
    assert "install -d -m 0700 -o root -g root /etc/provision/expose" in generate.command
    assert "chmod 0600 -- /etc/provision/expose/id_ed25519" in generate.command
    assert changes[0].actions[1] == Restart(expose.UNIT)
    # The private key is made on the box: nothing uploads it.
    uploads = [a for c in changes for a in c.actions if isinstance(a, Upload)]
    assert [u.dest for u in uploads] == [expose.KNOWN_HOSTS, expose.UNIT_PATH]
    assert all(b"PRIVATE KEY" not in u.content for u in uploads)


def test_expose_unit_file_runs_ssh_with_the_reverse_forward_on_loopback():
    text = unit().decode()
    exec_start = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    assert exec_start == (
        "ExecStart=/usr/bin/ssh -N -o BatchMode=yes -o IdentitiesOnly=yes "
        "-o ServerAliveInterval=15 -o ServerAliveCountMax=3 -o ExitOnForwardFailure=yes "
        "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=/etc/provision/expose/known_hosts "
        "-i /etc/provision/expose/id_ed25519 -p 22 -R 127.0.0.1:2222:127.0.0.1:22 "
        "tunnel@relay.example.org"
    )
    for line in ("Restart=always", "RestartSec=5", "After=network-online.target"):
        assert line in text.splitlines()
    assert "WantedBy=multi-user.target" in text
    assert "StartLimitIntervalSec=0" in text


def test_expose_converged_box_has_no_changes():
    assert check(tunnel_host(), TUNNEL) == []


def test_expose_key_with_loose_mode_is_fixed():
    (change,) = check(tunnel_host(key_mode="644"), TUNNEL)
    assert change.summary == f"make {expose.KEY} 0600 root"
    assert "chmod 0600" in change.actions[0].command


def test_expose_bind_public_and_ports_reach_the_unit():
    s = dataclasses.replace(
        TUNNEL, bind_public=True, remote_port=40022, relay_port=2200, local_port=2022
    )
    wanted = {
        **UNIT_VARS,
        "listen": "0.0.0.0",
        "remote_port": 40022,
        "relay_port": 2200,
        "local_port": 2022,
        "bind_public": True,
    }
    r = tunnel_host(wanted)
    file_is(r, expose.KNOWN_HOSTS, f"[relay.example.org]:2200 {RELAY_KEY}\n".encode())
    assert check(r, s) == []
    assert "-R 0.0.0.0:40022:127.0.0.1:2022" in unit(wanted).decode()


def test_expose_unit_change_names_the_authorized_keys_line_for_the_relay():
    r = tunnel_host()
    r.on(r"sha256sum -- /etc/systemd/system/provision-expose.service", (1, ""))
    (write, *_) = check(r, TUNNEL)
    assert write.summary.startswith("write /etc/systemd/system/provision-expose.service")
    assert expose.authorized_line(PUBLIC, TUNNEL) in write.summary


def test_expose_authorized_keys_line_is_restricted_to_the_one_forward():
    assert expose.authorized_line(PUBLIC + "\n", TUNNEL) == (
        'restrict,port-forwarding,permitlisten="127.0.0.1:2222",permitopen="127.0.0.1:2222",'
        'command="/bin/false" ' + PUBLIC
    )
    public = dataclasses.replace(TUNNEL, bind_public=True, remote_port=40022)
    assert expose.authorized_line(PUBLIC, public).startswith(
        'restrict,port-forwarding,permitlisten="0.0.0.0:40022",permitopen="127.0.0.1:40022",'
        'command="/bin/false" ssh-ed25519 '
    )


def test_expose_without_a_pinned_key_uses_keyscan_and_says_it_trusts_the_first_key():
    s = dataclasses.replace(TUNNEL, relay="tunnel@203.0.113.7:2200", relay_host_key="")
    r = tunnel_host({**UNIT_VARS, "relay_target": "tunnel@203.0.113.7", "relay_port": 2200})
    r.on(r"ssh-keygen -F \S*\[203.0.113.7\]:2200\S* -f /etc/provision/expose/known_hosts", (1, ""))
    (scan,) = check(r, s)
    assert "trusts the first key seen" in scan.summary
    assert "ssh-keyscan -T 10 -p 2200 -- 203.0.113.7 > /etc/provision/expose/known_hosts.scan" in (
        scan.actions[0].command
    )
    r.on(r"ssh-keygen -F", f"[203.0.113.7]:2200 {RELAY_KEY}\n")
    assert check(r, s) == []


def test_expose_inventory_relay_takes_address_port_account_and_host_key_from_the_laptop(
    tmp_path,
):
    known = tmp_path / "known_hosts"
    known.write_text(f"[198.51.100.9]:2201 {RELAY_KEY}\nother.example ssh-ed25519 AAAAx\n")
    conn = Connection(
        host="vps", addr="198.51.100.9", port=2201, user="admin", known_hosts=str(known)
    )
    vps = HostConfig("vps", conn, {}, {})
    s = expose.Settings(method="reverse-tunnel", relay="vps", relay_user="tunnel")
    assert expose.resolve_relay(s, vps) == expose.Relay(
        "198.51.100.9", 2201, "tunnel", "vps", str(known)
    )
    wanted = {**UNIT_VARS, "relay_target": "tunnel@198.51.100.9", "relay_port": 2201}
    r = tunnel_host(wanted)
    file_is(r, expose.KNOWN_HOSTS, f"[198.51.100.9]:2201 {RELAY_KEY}\n".encode())
    assert check(r, s, relay_host=vps) == []


def test_expose_inventory_relay_is_found_by_config_not_by_a_global(tmp_path):
    inventory_file = tmp_path / "inventory.ini"
    inventory_file.write_text(
        "box ansible_host=192.0.2.10 expose.method=reverse-tunnel expose.relay=vps\n"
        "vps ansible_host=198.51.100.9 ansible_port=2201 ansible_user=admin\n"
        "other ansible_host=192.0.2.11 expose.method=reverse-tunnel "
        "expose.relay=tunnel@203.0.113.7\n"
    )
    from provision import config, inventory

    box, other = config.load_hosts(inventory.load(inventory_file), ["box", "other"])
    vps = relay.inventory_relay(box.settings)
    assert (vps.name, vps.connection.addr, vps.connection.port) == ("vps", "198.51.100.9", 2201)
    assert expose.resolve_relay(box.settings["expose"], vps).target == "admin@198.51.100.9"
    assert relay.inventory_relay(other.settings) is None
    assert not hasattr(expose, "_inventory_lookup") and not hasattr(expose, "use_inventory")


def test_expose_relay_without_an_account_is_refused():
    s = expose.Settings(method="reverse-tunnel", relay="relay.example.org")
    with pytest.raises(ConfigError, match="names no account"):
        expose.resolve_relay(s, None, "box")


# --- settings refused before any connection ------------------------------------------------


def settings_from(**values):
    layer = {
        f"expose.{k}": Value(v, f"inventory.ini:{i}") for i, (k, v) in enumerate(values.items())
    }
    return build_settings([layer])[0]["expose"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"method": "reverse-tunnel"}, "expose.method: reverse-tunnel needs expose.relay"),
        ({"method": "tunnel"}, "is not one of: none, reverse-tunnel, wireguard"),
        ({"remote_port": "70000"}, "expose.remote_port: 70000 is not an unprivileged TCP port"),
        ({"remote_port": "80"}, "80 is not an unprivileged TCP port"),
        ({"relay_port": "0x16"}, "is not an integer"),
        ({"relay": "a b@c"}, "is not an inventory host or user@host[:port]"),
        ({"relay": "u@relay:99999"}, "99999 is out of range 1-65535"),
        ({"relay": "-oProxyCommand=x"}, "is not an inventory host or user@host[:port]"),
        ({"relay_host_key": "ssh-ed25519 not;base64"}, "is not a host key"),
        ({"address": "10.8.0.2"}, "needs a prefix length"),
        ({"address": "10.8.0.300/24"}, "is not an address/prefix"),
        ({"peer_public_key": "abc"}, "is not a WireGuard key"),
        ({"peer_endpoint": "vpn.example.org"}, "is not host:port"),
        ({"peer_allowed_ips": "10.8.0.0/33"}, "is not an address or network"),
        ({"method": "wireguard", "peer_public_key": WG_PEER}, "wireguard needs expose.address"),
        (
            {"method": "reverse-tunnel", "relay": "u@relay:2200", "relay_port": "22"},
            "expose.relay_port: 22 contradicts the port in u@relay:2200",
        ),
    ],
)
def test_expose_bad_settings_are_refused_with_exit_2(values, message):
    with pytest.raises(ConfigError, match=r"inventory\.ini:") as caught:
        settings_from(**values)
    assert message in caught.value.message
    assert caught.value.exit_code == 2


def test_expose_good_settings_are_accepted():
    s = settings_from(
        method="reverse-tunnel", relay="tunnel@[2001:db8::1]:2200", remote_port="40022"
    )
    assert expose.resolve_relay(s, None) == expose.Relay("2001:db8::1", 2200, "tunnel")
    assert settings_from(
        method="wireguard",
        address="10.8.0.2/24",
        peer_public_key=WG_PEER,
        peer_allowed_ips="10.8.0.0/24,192.168.50.0/24",
    ).peer_allowed_ips == ("10.8.0.0/24", "192.168.50.0/24")


# --- WireGuard ---------------------------------------------------------------------------------


def wireguard_box(**extra):
    r = FakeRemote().on(r"%a %U %s %n'\S* -- /etc/wireguard", NO_PAIR)
    r.on(r"sha256sum --", (1, "")).on(r"systemctl show", "UnitFileState=\nActiveState=inactive\n")
    return r


def test_expose_wireguard_generates_keys_on_the_box_and_writes_a_0600_config_without_them():
    changes = check(wireguard_box(), WIREGUARD, facts="ubuntu-24.04-fresh.txt")
    summaries = [c.summary.split(" (")[0] for c in changes]
    assert summaries == [
        "install 1 package: wireguard-tools",
        "generate the WireGuard key pair in /etc/wireguard on the box",
        "write /etc/wireguard/wg0.conf",
        "enable wg-quick@wg0.service at boot",
        "start wg-quick@wg0.service",
    ]
    generate = changes[1].actions[0].command
    assert "umask 077 && wg genkey > /etc/wireguard/private.key.new" in generate
    assert "wg pubkey < /etc/wireguard/private.key > /etc/wireguard/public.key" in generate
    (upload,) = [a for a in changes[2].actions if isinstance(a, Upload)]
    assert (upload.dest, upload.mode, upload.owner) == (expose.WG_CONF, "0600", "root")
    text = upload.content.decode()
    assert "PrivateKey" not in text
    assert "PostUp = wg set %i private-key /etc/wireguard/private.key" in text
    for line in (
        "Address = 10.8.0.2/24",
        f"PublicKey = {WG_PEER}",
        "Endpoint = vpn.example.org:51820",
        "AllowedIPs = 10.8.0.0/24",
        "PersistentKeepalive = 25",
    ):
        assert line in text.splitlines()
    assert "ListenPort" not in text
    assert Restart(expose.WG_UNIT) in changes[2].actions


def test_expose_wireguard_converged_and_shows_the_public_key_when_the_config_changes():
    r = FakeRemote().on(r"%a %U %s %n'\S* -- /etc/wireguard", pair(expose.WG_PRIVATE, "600"))
    r.on(r"systemctl show", "UnitFileState=enabled\nActiveState=active\n")
    file_is(r, expose.WG_CONF, render("expose/wg0.conf.j2", **WG_VARS), mode="600")
    # No rule answers a read of wg0.conf: reading the 0600 file would raise UnexpectedCommand.
    facts = "ubuntu-24.04-fresh.txt"
    installed = dataclasses.replace(WIREGUARD)
    changes = [c for c in check(r, installed, facts) if "wireguard-tools" not in c.summary]
    assert changes == []
    moved = dataclasses.replace(WIREGUARD, listen_port=51820)
    (conf,) = [c for c in check(r, moved, facts) if "wireguard-tools" not in c.summary]
    assert (
        conf.summary
        == "update /etc/wireguard/wg0.conf (this box's public key for the peer: Pub1Key=)"
    )
    # A 0600 file's old content is a secret: the diff says that it differs and why it is not
    # shown, and nothing read the file.
    assert conf.diff.startswith(f"{expose.WG_CONF} differs (sha256 ")
    assert "not shown: the host's copy is mode 600" in conf.diff
    assert "ListenPort" not in conf.diff
    assert not [c for c in r.ran if "wg0.conf" in c and "sha256sum" not in c]


def test_expose_wireguard_private_key_with_loose_mode_is_fixed():
    r = FakeRemote().on(r"%a %U %s %n'\S* -- /etc/wireguard", pair(expose.WG_PRIVATE, "644"))
    r.on(r"systemctl show", "UnitFileState=enabled\nActiveState=active\n")
    file_is(r, expose.WG_CONF, render("expose/wg0.conf.j2", **WG_VARS), mode="600")
    changes = check(r, WIREGUARD, "ubuntu-24.04-fresh.txt")
    assert f"make {expose.WG_PRIVATE} 0600 root" in [c.summary for c in changes]


def test_expose_wireguard_is_refused_in_a_container():
    with pytest.raises(ProvisionError, match="does not run inside a container"):
        check(wireguard_box(), WIREGUARD)


# --- the relay side ----------------------------------------------------------------------------


FACTS = (DATA / "debian-12-docker.txt").read_text()
ACCOUNT = "tunnel:x:1001:1001::/home/tunnel:/bin/sh\n"
KEYS_FILE = "/home/tunnel/.ssh/authorized_keys"


def box_config(settings=TUNNEL):
    connection = Connection(host="box", addr="192.0.2.10", user="admin")
    return HostConfig("box", connection, {"expose": settings}, {})


VPS = HostConfig("vps", Connection(host="vps", addr="192.0.2.1", user="admin"), {}, {})


class Relay(FakeRemote):
    """The relay host: an account `tunnel`, its authorized_keys as the uploads leave it."""

    def __init__(self, keys: str, **kwargs) -> None:
        super().__init__(host="vps", **kwargs)
        self.on(r"@@os-release", FACTS)
        self.on(r"getent passwd tunnel(?! \|)", ACCOUNT).on(r"id -gn tunnel", "tunnel\n")
        self.keys(keys)

    def keys(self, text: str) -> None:
        self.on(r'cut -d: -f6\) && \[ -n "\$h" \] && cat -- "\$h/\.ssh/authorized_keys"', text)

    def put_atomic(self, upload, timeout_s=120) -> None:
        super().put_atomic(upload, timeout_s)
        self.keys(upload.content.decode())


def authorize(relay_remote, *, plan=False, tmp_path, settings=TUNNEL, reporter=None):
    """authorize_on_relay with the box answering its public key and `relay_remote` the relay."""
    box = FakeRemote(host="box").on(r"cat -- /etc/provision/expose/id_ed25519.pub", PUBLIC + "\n")

    def connect(connection, **kwargs):
        if connection.host == "box":
            return box
        relay_remote.log = kwargs.get("log", relay_remote.log)
        return relay_remote

    return relay.authorize_on_relay(
        box_config(settings), VPS, connect, plan=plan, reporter=reporter, log_dir=tmp_path
    )


def test_expose_authorize_on_relay_installs_the_restricted_line_once(tmp_path):
    vps = Relay(f"ssh-ed25519 AAAAother me\n{PUBLIC}\n")
    vps.on(r"test -d /home/tunnel/\.ssh \|\| install -d -m 0700 -o tunnel -g tunnel", "")
    changed, line = authorize(vps, tmp_path=tmp_path)
    assert changed
    (upload,) = vps.uploads
    assert upload.dest == KEYS_FILE
    assert (upload.mode, upload.owner, upload.group) == ("0600", "tunnel", "tunnel")
    # The old unrestricted line for the same key is replaced, other keys are kept.
    assert upload.content.decode() == f"ssh-ed25519 AAAAother me\n{line}\n"
    assert line == expose.authorized_line(PUBLIC, TUNNEL)
    # Checked again after applying (the runner's convergence check): a second batch of reads.
    assert len(vps.batches) == 2
    assert authorize(vps, tmp_path=tmp_path) == (False, line)
    assert len(vps.uploads) == 1
    # The relay's transcript records what was done there.
    logs = "".join(p.read_text() for p in tmp_path.rglob("*vps*") if p.is_file())
    assert "provision apply on admin@192.0.2.1" in logs


def test_expose_relay_plan_lists_its_changes_and_runs_nothing(tmp_path, capsys):
    vps = Relay("")
    changed, line = authorize(vps, plan=True, tmp_path=tmp_path, reporter=Reporter(diff=True))
    assert changed
    out = capsys.readouterr().out
    assert f"authorize box's tunnel key in {KEYS_FILE} (its one port forward only)" in out
    assert f"+{line}" in out  # the diff of authorized_keys: the line it would add
    assert vps.uploads == []
    # Every command the relay saw: the facts, then the declared reads (one batch), nothing else.
    declared = [r.command for r in vps.batches[0]]
    assert len(vps.batches) == 1 and vps.commands == 2
    assert "@@os-release" in vps.ran[0]
    assert all(any(d in c for d in declared) for c in vps.ran[1:]), vps.ran
    assert not [c for c in vps.ran if "install -d" in c]


def test_expose_relay_without_the_account_is_refused_before_anything_changes(tmp_path):
    vps = Relay("").on(r"getent passwd tunnel(?! \|)", (2, ""))
    with pytest.raises(ProvisionError, match="no account 'tunnel' for the tunnel"):
        authorize(vps, tmp_path=tmp_path)
    assert vps.uploads == []


def test_expose_relay_bind_public_needs_gateway_ports_and_says_so_after_installing(tmp_path):
    public = dataclasses.replace(TUNNEL, bind_public=True, remote_port=40022)
    vps = Relay("").on(r"sshd -T -C user=tunnel,host=box,addr=127.0.0.1", "gatewayports no\n")
    vps.on(r"test -d /home/tunnel/\.ssh", "")
    with pytest.raises(ProvisionError, match="GatewayPorts clientspecified") as caught:
        authorize(vps, tmp_path=tmp_path, settings=public)
    assert "(the key is installed)" in caught.value.message
    (upload,) = vps.uploads
    assert 'permitlisten="0.0.0.0:40022"' in upload.content.decode()
    vps.on(r"sshd -T -C", "gatewayports clientspecified\n")
    assert authorize(vps, tmp_path=tmp_path, settings=public)[0] is False


def test_expose_authorize_on_relay_needs_the_key_on_the_box_first(tmp_path):
    box = FakeRemote(host="box").on(r"cat --", (1, ""))
    vps = Relay("")
    with pytest.raises(ProvisionError, match="no tunnel key") as caught:
        relay.authorize_on_relay(box_config(), VPS, lambda c, **kw: box, log_dir=tmp_path)
    assert "provision expose --host box" in caught.value.hint
    assert vps.ran == []


def test_expose_ssh_config_gets_a_proxyjump_entry_for_a_tunnelled_box():
    from provision.config import HostConfig
    from provision.sshconfig import entry

    conn = Connection(host="box", addr="192.168.1.50", port=2022, user="alice", key_file="/k")
    s = dataclasses.replace(TUNNEL, relay="vps", relay_port=2200, remote_port=40022)
    hc = HostConfig("box", conn, {"expose": s}, {})
    block = entry(hc)
    assert (
        "Host box-via-relay\n"
        "    HostName 127.0.0.1\n"
        "    Port 40022\n"
        "    ProxyJump vps:2200\n"
        "    HostKeyAlias [192.168.1.50]:2022\n"
        "    User alice\n"
        "    IdentityFile /k\n"
        "    IdentitiesOnly yes\n"
    ) in block
    assert block.startswith("# >>> provision box >>>\nHost box\n")
    plain = HostConfig("box", conn, {"expose": expose.Settings()}, {})
    assert "via-relay" not in entry(plain)


# --- an existing private key is never replaced ------------------------------------------------


def test_expose_tunnel_key_without_its_public_half_derives_it_and_keeps_the_private_key():
    r = tunnel_host()
    derived = f"600 root 411 {expose.KEY}\n{keypair.PUBLIC_MARK}\n{PUBLIC}\n"
    r.on(r"%a %U %s %n'\S* -- /etc/provision/expose", derived)
    changes = check(r, TUNNEL)
    assert [c.summary for c in changes] == [
        f"derive {expose.KEY}.pub from the existing private key (which is kept)"
    ]
    command = changes[0].actions[0].command
    assert "ssh-keygen -y -P '' -f /etc/provision/expose/id_ed25519 > " in command
    assert "-t ed25519" not in command and f"rm -f -- {expose.KEY} " not in command


def test_expose_wireguard_private_key_without_public_key_derives_it():
    derived = f"600 root 45 {expose.WG_PRIVATE}\n{keypair.PUBLIC_MARK}\nDerived1=\n"
    r = FakeRemote().on(r"%a %U %s %n'\S* -- /etc/wireguard", derived)
    r.on(r"systemctl show", "UnitFileState=enabled\nActiveState=active\n")
    r.on(r"sha256sum -- /etc/wireguard/wg0.conf", (1, ""))
    changes = [c for c in check(r, WIREGUARD, "ubuntu-24.04-fresh.txt")]
    summaries = [c.summary for c in changes]
    assert f"derive {expose.WG_PUBLIC} from the existing private key (which is kept)" in summaries
    assert not [s for s in summaries if "generate" in s]
    derive = next(c for c in changes if c.summary.startswith("derive")).actions[0].command
    assert "wg pubkey < /etc/wireguard/private.key > /etc/wireguard/public.key.new" in derive
    assert "genkey" not in derive
    conf = next(c for c in changes if "wg0.conf" in c.summary)
    assert "this box's public key for the peer: Derived1=" in conf.summary


def test_expose_empty_public_key_file_counts_as_missing():
    r = FakeRemote().on(
        r"%a %U %s %n'\S* -- /etc/wireguard",
        f"600 root 45 {expose.WG_PRIVATE}\n644 root 0 {expose.WG_PUBLIC}\n{keypair.PUBLIC_MARK}\n",
    )  # wg pubkey failed (not installed yet): no public key came back
    r.on(r"systemctl show", "UnitFileState=enabled\nActiveState=active\n")
    r.on(r"sha256sum -- /etc/wireguard/wg0.conf", (1, ""))
    summaries = [c.summary for c in check(r, WIREGUARD, "ubuntu-24.04-fresh.txt")]
    assert f"derive {expose.WG_PUBLIC} from the existing private key (which is kept)" in summaries


@pytest.mark.parametrize("exists", [True, False])
def test_expose_key_generation_refuses_to_replace_an_existing_private_key(tmp_path, exists):
    """The guard in front of ssh-keygen/wg genkey, run by a real sh."""
    import subprocess

    key = tmp_path / "private.key"
    if exists:
        key.write_text("old key\n")
    guard = expose.keep_private_key(str(key)) + " && echo generated"
    proc = subprocess.run(["sh", "-c", guard], capture_output=True, text=True)
    if exists:
        assert proc.returncode == 1 and "generated" not in proc.stdout
        assert "never replaces a private key" in proc.stderr and key.read_text() == "old key\n"
    else:
        assert proc.returncode == 0 and proc.stdout == "generated\n"


def test_expose_generation_commands_are_guarded():
    fresh = FakeRemote().on(r"%a %U %s %n'\S* -- /etc/provision/expose", NO_PAIR)
    fresh.on(r"sha256sum --", (1, "")).on(r"systemctl show", "UnitFileState=\nActiveState=\n")
    generate = check(fresh, TUNNEL)[0].actions[0].command
    assert expose.keep_private_key(expose.KEY) in generate
    assert f"rm -f -- {expose.KEY}.pub" in generate and f"rm -f -- {expose.KEY} " not in generate
    wg = check(wireguard_box(), WIREGUARD, facts="ubuntu-24.04-fresh.txt")[1].actions[0].command
    assert wg.index(expose.keep_private_key(expose.WG_PRIVATE)) < wg.index("wg genkey")


# --- declared reads -------------------------------------------------------------------------


@pytest.mark.parametrize("facts", ["debian-12-nspawn.txt", "ubuntu-24.04-fresh.txt"])
def test_expose_check_reads_only_what_it_declares_in_one_batch(facts):
    fresh = FakeRemote().on(r"%a %U %s %n'\S* -- /etc/provision/expose", NO_PAIR)
    fresh.on(r"sha256sum --", (1, "")).on(r"systemctl show", "UnitFileState=\nActiveState=\n")
    scan = dataclasses.replace(TUNNEL, relay_host_key="")
    fresh.on(r"ssh-keygen -F relay.example.org -f", (1, ""))
    for remote, s in ((fresh, TUNNEL), (fresh, scan), (tunnel_host(), TUNNEL)):
        before = remote.commands
        check(remote, s, facts)  # strict: an undeclared read raises UndeclaredRead
        assert remote.commands == before + 1  # the one batch of declared reads, nothing else
    if facts.startswith("ubuntu"):  # wireguard is refused in the nspawn container
        check(wireguard_box(), WIREGUARD, facts)
    # A read the step does not declare is an error, not a quiet extra round trip.
    f = parse_facts((DATA / facts).read_text())
    ctx = Context("box", f, {"expose": TUNNEL, "ssh": ssh.Settings()}, None, gathered={})
    ctx.strict = True
    with pytest.raises(UndeclaredRead):
        expose.check(ctx)


def test_expose_reads_never_fetch_a_private_key():
    f = parse_facts((DATA / "ubuntu-24.04-fresh.txt").read_text())
    for s in (TUNNEL, WIREGUARD):
        ctx = Context("box", f, {"expose": s, "ssh": ssh.Settings()}, None, gathered={})
        for read in expose.STEP.reads(ctx):
            for private in (expose.KEY, expose.WG_PRIVATE):
                assert f"cat -- {private} " not in read.command + " "
                assert "head -c" not in read.command or private not in read.command


@pytest.mark.parametrize(
    ("private", "public", "answer"),
    [
        ("secret\n", "ssh-ed25519 AAAApub box\n", "ssh-ed25519 AAAApub box"),
        ("secret\n", "", "derived-from-private"),  # empty public file: derived
        ("secret\n", None, "derived-from-private"),  # no public file: derived
        (None, "ssh-ed25519 AAAApub box\n", "ssh-ed25519 AAAApub box"),
        (None, None, ""),
    ],
)
def test_key_pair_read_derives_the_public_key_on_the_host_and_never_prints_the_private(
    tmp_path, private, public, answer
):
    """keypair.pair_read's script, run by a real sh on real files."""
    import subprocess

    key, pub = tmp_path / "id", tmp_path / "id.pub"
    if private is not None:
        key.write_text(private)
        key.chmod(0o600)
    if public is not None:
        pub.write_text(public)
    derive = f"test -r {key} && echo derived-from-private"  # stands in for ssh-keygen -y
    read = keypair.pair_read(str(key), str(pub), derive)
    proc = subprocess.run(["sh", "-c", read.command], capture_output=True, text=True)
    assert "secret" not in proc.stdout + proc.stderr
    state = keypair.parse_pair(proc.stdout)
    assert state.public == answer
    assert (str(key) in state.found) == (private is not None)
    if private is not None:
        assert state.found[str(key)][0] == "600"
    assert state.public_missing(str(pub)) == (not public)


def test_expose_relay_command_plans_on_the_inventory_relay(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from provision import remote as remote_mod
    from provision.cli import cli

    inventory_file = tmp_path / "inventory.ini"
    inventory_file.write_text(
        "box ansible_host=192.0.2.10 expose.method=reverse-tunnel expose.relay=vps\n"
        "vps ansible_host=192.0.2.1 ansible_user=tunnel\n"
    )
    box = FakeRemote(host="box").on(r"cat -- /etc/provision/expose/id_ed25519.pub", PUBLIC + "\n")
    vps = Relay("")
    monkeypatch.setattr(remote_mod, "connect", lambda c, **kw: box if c.host == "box" else vps)
    argv = ["expose-relay", "-i", str(inventory_file), "-H", "box", "--plan"]
    result = CliRunner().invoke(cli, [*argv, "--log-dir", str(tmp_path / "logs")])
    assert result.exit_code == 0, result.output
    assert f"authorize box's tunnel key in {KEYS_FILE}" in result.output
    assert "box: would install on vps: restrict,port-forwarding," in result.output
    assert vps.uploads == [] and not [c for c in vps.ran if "install -d" in c]
