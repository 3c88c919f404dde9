"""doctor's reads: two read-only POSIX sh scripts (the login user's, and root's where sudo
works) whose `@@name` sections `parse` turns into DoctorData.

The NVIDIA cards are the ones the host facts found (provision.facts.gpu's PCI read): the
user script reads the PCIe link files of exactly those slots, so no second PCI walk exists.
"""

from __future__ import annotations

from provision import shell
from provision.doctor import parsers as p
from provision.facts import Facts, smi, split_sections
from provision.steps import containers_toolkit

NVIDIA_SMI_FIELDS = (
    "index,name,pci.bus_id,memory.total,power.limit,pcie.link.gen.current,pcie.link.gen.max,"
    "pcie.link.width.current,pcie.link.width.max,driver_version"
)
DKMS_KEYS = ("/var/lib/dkms/mok.pub", "/var/lib/shim-signed/mok/MOK.der")
# Files that configure a static address: netplan, ifupdown, systemd-networkd, NetworkManager.
STATIC_CONFIG = r"""
grep -lE '^[[:space:]]*addresses:' /etc/netplan/*.yaml 2>/dev/null
grep -lE '^[[:space:]]*iface[[:space:]].*inet6?[[:space:]]+static' /etc/network/interfaces \
  /etc/network/interfaces.d/* 2>/dev/null
grep -liE '^[[:space:]]*Address=' /etc/systemd/network/*.network 2>/dev/null
grep -lE '^[[:space:]]*method=manual' /etc/NetworkManager/system-connections/* 2>/dev/null
""".strip()

# The files sshd reads, as the login user can read them, for the fallback when `sshd -T` needs
# root: sshd_config, then every file its Include lines name, followed to any depth. Each file
# is printed once after `# file: PATH` (`# unreadable: PATH`: there, but not readable by us;
# a folder is a PATH ending in /), and each Include pattern (a relative one in /etc/ssh, as
# sshd resolves it) as `# glob: PATTERN` with its matches as `# match: PATH`, in the C
# locale's order as sshd's glob(3) sorts them. parsers.parse_sshd_config walks them in sshd's
# order. Arguments are split at blanks, quotes dropped (a path with a blank is not followed).
SSHD_CONFIG_READ = r"""(export LC_ALL=C; IFS='
'; set -f; todo=/etc/ssh/sshd_config; seen=
while [ -n "$todo" ]; do files=$todo; todo=; for f in $files; do
  case "
$seen
" in *"
$f
"*) continue;; esac; seen="$seen
$f"
  [ -r "$f" ] || { printf '# unreadable: %s\n' "$f"; continue; }
  printf '# file: %s\n' "$f"; cat -- "$f"; echo
  for p in $(awk '{ sub(/^[ \t]+/, ""); k = $0; sub(/[ \t=].*/, "", k)
      if (tolower(k) != "include") next
      r = substr($0, length(k) + 1); sub(/^[ \t]*=?[ \t]*/, "", r); n = split(r, w, /[ \t]+/)
      for (i = 1; i <= n; i++) { if (w[i] ~ /^#/) break; gsub(/"/, "", w[i])
        if (w[i] != "") print w[i] } }' "$f" 2>/dev/null); do
    case $p in /*) ;; *) p=/etc/ssh/$p;; esac; printf '# glob: %s\n' "$p"; d=${p%/*}/
    case $d in *[][*?]*) ;; *) [ -d "$d" ] && { [ -r "$d" ] && [ -x "$d" ] ||
      printf '# unreadable: %s\n' "$d"; };; esac
    set +f; for m in $p; do [ -e "$m" ] && { printf '# match: %s\n' "$m"; todo="$todo
$m"; }; done; set -f
  done
done; done)"""

# As the login user; every section best effort. SLOTS: the GPUs' PCI addresses from facts.
USER_SCRIPT = (
    r"""
echo @@nvidia-smi; if command -v nvidia-smi >/dev/null 2>&1; then
  QUERY; rc=$?
  echo @@nvidia-smi-exit; echo $rc; fi
echo @@pcie; for s in SLOTS; do d=/sys/bus/pci/devices/$s; [ -d "$d" ] || continue
  echo "$s|$(cat "$d/current_link_speed" 2>/dev/null)|$(cat "$d/current_link_width" \
    2>/dev/null)|$(cat "$d/max_link_speed" 2>/dev/null)|$(cat "$d/max_link_width" 2>/dev/null)"
done
echo @@lspci-vv; command -v lspci >/dev/null 2>&1 && lspci -vv -nn -d 10de: 2>/dev/null
echo @@df-root; df -B1 -P / 2>/dev/null | tail -n 1
echo @@cpu; nproc 2>/dev/null; grep -m1 '^model name' /proc/cpuinfo
  grep -E '^(physical id|cpu cores)' /proc/cpuinfo | sort -u
echo @@mokutil; command -v mokutil >/dev/null 2>&1 && mokutil --sb-state 2>&1
echo @@mok-key; if command -v mokutil >/dev/null 2>&1; then for k in KEYS; do
  [ -e "$k" ] && mokutil --test-key "$k" 2>&1; done; fi
echo @@modules; grep -E '^(nouveau|nvidia) ' /proc/modules 2>/dev/null | cut -d' ' -f1
echo @@headers; k=$(uname -r); echo "$k"; [ -e "/lib/modules/$k/build" ] && echo present
echo @@reboot-pkgs; cat /var/run/reboot-required.pkgs 2>/dev/null
echo @@dkms; command -v dkms >/dev/null 2>&1 && dkms status 2>/dev/null | grep -i nvidia
echo @@mounts; cat /proc/self/mounts 2>/dev/null
echo @@route; ip -o -4 route show default 2>/dev/null
echo @@addr4; ip -o -4 addr show scope global 2>/dev/null
echo @@static-config; STATIC
echo @@sshd-config; SSHD_CONFIG
echo @@listen; ss -Hltn 2>/dev/null
echo @@cdi-specs; grep -l 'nvidia.com/gpu' /etc/cdi/* /var/run/cdi/* 2>/dev/null
echo @@dev-char; UNLINKED
echo @@daemon-json; cat /etc/docker/daemon.json 2>/dev/null
echo @@slurm-ping; if command -v scontrol >/dev/null 2>&1 && [ -e /etc/slurm/slurm.conf ]; then
  out=$(timeout 15 scontrol ping 2>&1); rc=$?; printf '%s\n' "$out" | head -n 3; echo "exit=$rc"
  echo @@slurm-nodes; timeout 10 sinfo -h -N -o '%N|%t|%E' 2>/dev/null | sort -u; fi
echo @@end
""".replace("QUERY", smi.query("gpu", NVIDIA_SMI_FIELDS, 30))
    .replace("UNLINKED", containers_toolkit.UNLINKED_READ.command)
    .replace("KEYS", " ".join(DKMS_KEYS))
    .replace("STATIC", STATIC_CONFIG)
    .replace("SSHD_CONFIG", SSHD_CONFIG_READ)
)

# As root (sudo -n, or with the given password): what the login user cannot read. Its
# sections replace the login user's where they are not empty.
ROOT_SCRIPT = r"""
echo @@lspci-vv; command -v lspci >/dev/null 2>&1 && lspci -vv -nn -d 10de: 2>/dev/null
echo @@dmidecode; command -v dmidecode >/dev/null 2>&1 && dmidecode -t processor 2>/dev/null
echo @@sshd-t; sshd -T 2>/dev/null | grep -E '^(passwordauthentication|permitrootlogin) '
echo @@static-config; STATIC
echo @@end
""".replace("STATIC", STATIC_CONFIG)


def user_script(facts: Facts) -> str:
    """The login user's script, reading the link files of the GPUs the facts found."""
    # The slots are the host's text: quoted, never pasted.
    slots = shell.cmd(*sorted(d.slot for d in facts.gpus)) if facts.gpus else ""
    return USER_SCRIPT.replace("SLOTS", slots)


def can_sudo(facts: Facts, has_password: bool) -> bool:
    """Whether the root script can run without a prompt."""
    return facts.uid == 0 or facts.sudo == "nopasswd" or (facts.sudo == "password" and has_password)


def gather(remote, facts: Facts) -> str:
    """Run the gather scripts; the root one only where sudo works. Returns the merged text."""
    remote.is_root = facts.uid == 0
    text = remote.run(user_script(facts), sudo=False, check=False).stdout
    has_password = bool(remote.connection.sudo_password)
    if can_sudo(facts, has_password):
        root = remote.run(ROOT_SCRIPT, sudo=True, check=False)
        if root.ok:
            text += "\n@@root\n" + root.stdout
    return text


def parse(text: str) -> p.DoctorData:
    """The gather scripts' output (login user's sections, then root's after @@root)."""
    user_text, _, root_text = text.partition("\n@@root\n")
    s = split_sections(user_text)
    root = split_sections(root_text)
    for key, value in root.items():
        if value.strip():
            s[key] = value
    links = p.parse_sysfs_links(s.get("pcie", ""))
    # lspci's registers win where root could read them (unprivileged lspci shows no caps).
    links.update(p.parse_lspci_links(s.get("lspci-vv", "")))
    smi_exit = p.parse_int(s.get("nvidia-smi-exit", "0").strip() or "0")
    free, size = p.parse_df(s.get("df-root", ""))
    threads, model, cores = p.parse_cpu(s.get("cpu", ""), s.get("dmidecode", ""))
    headers = s.get("headers", "").splitlines()
    sshd = p.parse_sshd_t(s.get("sshd-t", ""))
    sshd_source = "sshd -T" if sshd else "config files"
    if not sshd:
        sshd = p.parse_sshd_config(s.get("sshd-config", ""))
    return p.DoctorData(
        smi_present="nvidia-smi-exit" in s,
        smi_exit=smi_exit if smi_exit is not None else 0,
        smi_output=s.get("nvidia-smi", ""),
        smi_gpus=p.parse_nvidia_smi(s.get("nvidia-smi", "")),
        links=links,
        root_free_bytes=free,
        root_size_bytes=size,
        threads=threads,
        cpu_model=model,
        cores=cores,
        sb_state=p.parse_sb_state(s.get("mokutil", "")),
        mok_enrolled=p.parse_mok_key(s.get("mok-key", "")),
        modules=tuple(s.get("modules", "").split()),
        kernel=headers[0].strip() if headers else "",
        headers="present" in headers[1:],
        reboot_packages=tuple(s.get("reboot-pkgs", "").split()),
        dkms_nvidia=tuple(x for x in s.get("dkms", "").splitlines() if x.strip()),
        mounts=p.parse_mounts(s.get("mounts", "")),
        default_iface=p.parse_default_iface(s.get("route", "")),
        addresses=p.parse_addresses(s.get("addr4", "")),
        static_config=tuple(sorted({x for x in s.get("static-config", "").split() if x})),
        sshd=sshd,
        sshd_source=sshd_source if sshd else "",
        listeners=p.parse_listeners(s.get("listen", "")),
        cdi_specs=tuple(s.get("cdi-specs", "").split()),
        unlinked_nodes=tuple(s.get("dev-char", "").split()),
        daemon_json=s.get("daemon-json", ""),
        slurm_ping=s.get("slurm-ping", ""),
        slurm_nodes=tuple(s.get("slurm-nodes", "").splitlines()),
    )
