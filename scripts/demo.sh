#!/usr/bin/env bash
# make demo: the whole flow of remediate on its embedded default fleet, the lab (remediator/lab/scenarios/:
# real OpenSSH hosts on 127.0.0.1, one per failure class plus healthy ones, and four hostile ones in the
# group `hostile`). Nothing outside the lab hosts is changed, and the fleet is taken down again at the end
# (also on Ctrl-C).
set -uo pipefail
cd "$(dirname "$0")/.."

R="$PWD/.venv/bin/remediate"
WORK=$(mktemp -d /tmp/remediator-demo.XXXXXX)
LAB="$WORK/lab"
INV="$LAB/inventory.yml"
export REMEDIATE_STATE_DB="$WORK/state.db"

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; }
run() { step "$@"; "${@:2}"; echo "(exit $?)"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "make demo brings up the lab fleet, which needs root (overlay mounts in private namespaces)." >&2
  echo "Run it as root, or try the offline part: $R diagnose --facts inventories/examples/tf24-two-toolkits.json --target tensorflow==2.4.1" >&2
  exit 1
fi

trap '"$R" lab down --state "$LAB" >/dev/null 2>&1' EXIT
step "1. a lab fleet of broken GPU hosts" "$R" lab up --state "$LAB"
"$R" lab up --state "$LAB" || exit 1

run "2. what a target needs, from the compatibility matrix" "$R" matrix show tensorflow==2.12.0
run "3. probe every host over SSH (one round trip each)" "$R" probe -i "$INV" --limit '!hostile:!sudopassword' --out "$WORK/facts.json"
"$R" probe -i "$INV" --limit cuda-wrong-default --out "$WORK/one-host.json" >/dev/null
run "4. what is wrong with one host (cuda-wrong-default, which should run TensorFlow 2.5.0)" \
  "$R" diagnose --facts "$WORK/one-host.json" --target tensorflow==2.5.0
run "5. the plan for the whole fleet (changes nothing)" "$R" plan -i "$INV" --limit '!hostile:!sudopassword' --out "$WORK/plan.json"
run "6. apply it in check mode: what the playbooks would change" \
  "$R" apply "$WORK/plan.json" -i "$INV" --check --limit lib-shadowed-pip:cudnn-shadowed:framework-version-mismatch \
  --max-fail-percent 100 --no-verify
run "7. remember today's state as known-good, then check for drift" "$R" drift -i "$INV" --limit '!hostile:!sudopassword' --baseline
run "8. one page for the whole fleet" "$R" report --html "$WORK/report.html"
run "9. the timeline of one host" "$R" history cudnn-shadowed
run "10. hostile hosts, and one whose sudo wants a password: each fails or is refused alone, as inert text" \
  "$R" plan -i "$INV" --limit 'hostile:sudopassword' --timeout 15

printf '\nDemo files (plan, facts, report, state db) are in %s\n' "$WORK"
