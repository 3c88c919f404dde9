#!/bin/bash
# Re-records tests/data/sshd/*.txt: provision's sshd_config.SSHD_PROBE run as root over SSH on
# a container test host (a real sshd), one outside fault at a time written into its rootfs.
# Run as root from the repository root on a fresh host (the unit tests expect its port in
# tests/unit/test_ssh.py PORT):
#   python3 tests/hosts/testhost.py up --name rec && bash tests/data/sshd/record.sh rec
# (Recordings made before the @@disk sections have none.) The local-*.txt cases, answered by
# this machine's sshd on config trees of their own: record-local.sh.
PYTHON=${PYTHON:-python3}
export PYTHONPATH=$PWD
NAME=$1; R=/tmp/provision-testhosts/$NAME/rootfs; D=$R/etc/ssh/sshd_config.d
PORT=$($PYTHON -c "import json;print(json.load(open('/tmp/provision-testhosts/$NAME/host.json'))['port'])")
PROBE=$($PYTHON -c "from provision.steps import sshd_config; print(sshd_config.SSHD_PROBE)")
$PYTHON -c "
from provision.steps import ssh; from provision.templates import render; import sys
sys.stdout.buffer.write(render('ssh/00-provision.conf.j2', **ssh.variables(ssh.Settings(port=$PORT))))" > /tmp/rec-ours.conf
cp "$R/etc/ssh/sshd_config" /tmp/rec-main
rec() {
    python3 tests/hosts/testhost.py ssh --name "$NAME" --user root "sh -c $(printf %q "$PROBE")" \
        > "tests/data/sshd/$1.txt"
    # Every file of sshd_config and its folder, read by sshd or not (doctor's fallback test).
    for f in "$R/etc/ssh/sshd_config" "$D"/*; do
        [ -f "$f" ] && { echo "@@disk ${f#"$R"}"; cat -- "$f"; echo; }
    done >> "tests/data/sshd/$1.txt"
    echo "$1: $(wc -l < "tests/data/sshd/$1.txt") lines"
}
rm -f "$D/00-provision.conf"; rec fresh
cp /tmp/rec-ours.conf "$D/00-provision.conf"; rec converged
printf 'ThisIsNotAnOption yes\n' > "$D/50-typo.conf"; rec invalid; rm "$D/50-typo.conf"
printf '# a local override\nPasswordAuthentication yes\n' > "$D/00-aaa.conf"; rec sorts-first
rm "$D/00-aaa.conf"
printf 'Banner /etc/issue.net\nPasswordAuthentication yes\n' > "$D/00-private.conf"
chmod 600 "$D/00-private.conf"; rec private; rm "$D/00-private.conf"
printf 'X11Forwarding no\nMatch User tester\n    PasswordAuthentication yes\n    MaxAuthTries 10\nMatch Address 10.0.0.0/8\n    X11Forwarding no\n' \
    > "$D/50-match.conf"
rec match; rm "$D/50-match.conf"
sed -i '1i PermitRootLogin yes' "$R/etc/ssh/sshd_config"; rec main-edited
cp /tmp/rec-main "$R/etc/ssh/sshd_config"
sed -i 's/^Include /#Include /' "$R/etc/ssh/sshd_config"; rec no-include
cp /tmp/rec-main "$R/etc/ssh/sshd_config"
printf 'Include /etc/ssh/missing.conf\nAllowUsers tester\n' > "$D/20-inc.conf"; rec include-missing
rm "$D/20-inc.conf"
