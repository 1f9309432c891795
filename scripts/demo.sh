#!/usr/bin/env bash
# make demo: until the lab fleet exists, diagnose the example facts shipped in inventories/examples/.
set -euo pipefail
cd "$(dirname "$0")/.."
for f in inventories/examples/*.json; do
  target=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1])).get("example_target",""))' "$f")
  echo "== $f ($target)"
  .venv/bin/remediate diagnose --facts "$f" --target "$target" || true
done
