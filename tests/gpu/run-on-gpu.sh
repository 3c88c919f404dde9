#!/usr/bin/env bash
# The GPU check: run provision's GPU-only checks on a machine with an NVIDIA GPU, through a
# local connection (no SSH), and `provision doctor` / `compat` / `facts` there. Results go to
# $OUT (default ./gpu-out): output.txt, junit.xml, compat.txt, facts.json, doctor.txt/json,
# status.txt.
# See ../shared/docs/GPU-CHECK.md. On a machine without a GPU it fails, saying so.
#
#   OUT=/tmp/out bash tests/gpu/run-on-gpu.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-./gpu-out}
mkdir -p "$out"
if [ -d .whl ] && ! python3 -c "import fabric, testinfra" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
inv=$(mktemp)
printf '[gpu]\nlocal ansible_connection=local\n' > "$inv"
{
  echo "# $(date -u +%FT%TZ) $(hostname)"
  nvidia-smi -L 2>&1 || echo "nvidia-smi: not available"
} > "$out/summary.txt"
python3 -m provision facts -i "$inv" --host local --json > "$out/facts.json" 2>&1
python3 -m provision compat -i "$inv" --host local > "$out/compat.txt" 2>&1
python3 -m provision doctor -i "$inv" --host local > "$out/doctor.txt" 2>&1
python3 -m provision doctor -i "$inv" --host local --json > "$out/doctor.json" 2>&1
python3 -m provision status -i "$inv" --host local > "$out/status.txt" 2>&1
python3 -m pytest -p no:cacheprovider -m gpu tests/gpu -rA -s \
  --junitxml "$out/junit.xml" 2>&1 | tee "$out/output.txt"
rc=${PIPESTATUS[0]}
echo "[gpu-check] pytest exit $rc; results in $out" | tee -a "$out/summary.txt"
exit "$rc"
