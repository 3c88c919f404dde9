#!/bin/bash
# Records tests/data/sshd/local-*.txt: provision's sshd_config.SSHD_PROBE answered by this
# machine's real sshd (-f: a config tree of our own under a temp folder T, -h: a key of our
# own), one case per config tree: how sshd orders Include against the lines around it.
# The tree is a copy of Debian 12's stock sshd_config (this machine's /etc/ssh/sshd_config,
# its Include pointed at T), with the lines each case adds. Paths under T are written back as
# /etc/ssh/... (and T/key as /key), so a recording reads like one of a real /etc/ssh; `@@disk
# PATH` sections at the end hold every file of the tree, read by sshd or not.
# Run as root from the repository root: bash tests/data/sshd/record-local.sh
set -e
PYTHON=${PYTHON:-python3}
export PYTHONPATH=$PWD
SSHD=${SSHD:-/usr/sbin/sshd}
PROBE=$($PYTHON -c "from provision.steps import sshd_config; print(sshd_config.SSHD_PROBE)")
T=$(mktemp -d /tmp/sshd-rec.XXXXXX)
trap 'rm -rf "$T"' EXIT
ssh-keygen -q -t ed25519 -N '' -f "$T/key"
E=$T/etc/ssh
reset() {
    rm -rf "$E"; mkdir -p "$E/sshd_config.d"
    sed "s#^Include /etc/ssh/#Include $E/#" /etc/ssh/sshd_config > "$E/sshd_config"
}
rec() {
    out=tests/data/sshd/local-$1.txt
    sh -c "sshd() { $SSHD -f $E/sshd_config -h $T/key \"\$@\"; }; $PROBE" > "$out.tmp" || true
    find "$E" -type f | LC_ALL=C sort | while IFS= read -r f; do
        echo "@@disk $f"; cat -- "$f"; echo
    done >> "$out.tmp"
    sed "s#$E#/etc/ssh#g; s#$T/#/#g" "$out.tmp" > "$out"; rm "$out.tmp"
    echo "$1: $(grep -E '^(passwordauthentication|permitrootlogin) ' "$out" | tr '\n' ' ')"
}
D=$E/sshd_config.d
# A keyword above the Include line beats the drop-ins (first value wins).
reset; sed -i '1i PasswordAuthentication yes' "$E/sshd_config"
printf 'PasswordAuthentication no\nPermitRootLogin no\n' > "$D/00-provision.conf"
rec above-include
# A drop-in beats a keyword below the Include line.
reset; printf 'PasswordAuthentication yes\nPermitRootLogin yes\n' >> "$E/sshd_config"
printf 'PasswordAuthentication no\n' > "$D/50-cloud.conf"
rec below-include
# Drop-ins in the C locale's order (B sorts before a); a Match block in one ends at its end.
reset; printf 'Match User backup\n    PasswordAuthentication yes\n' > "$D/B-match.conf"
printf 'PasswordAuthentication no\nPermitRootLogin yes\n' > "$D/a-later.conf"
rec match-ends-with-its-file
# An Include inside a Match block is conditional (its "no" is not the global value); one in a
# drop-in is followed where it stands.
reset; mkdir "$E/extra"
printf 'PasswordAuthentication no\n' > "$E/extra/10-pw.conf"
printf 'PermitRootLogin yes\n' > "$E/extra/20-root.conf"
printf 'Match User backup\n    Include %s/extra/10-pw.conf\n' "$E" >> "$E/sshd_config"
printf 'Include %s/extra/20-root.conf\nPermitRootLogin no\n' "$E" > "$D/10-nested.conf"
rec nested-and-in-match
# No Include line: sshd reads no drop-in at all.
reset; sed -i 's/^Include /#Include /' "$E/sshd_config"
printf 'PasswordAuthentication no\n' > "$D/00-provision.conf"
rec no-include-line
