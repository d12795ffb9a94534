#!/usr/bin/env bash
# Type-check Grafana dashboard JSON files against Grafana's published schema (@grafana/schema), with
# TypeScript in strict mode. Installs the pinned packages (package-lock.json) on first use.
#
#   tests/grafana/check.sh dashboards/json/*.json
#
# Exit status: 0 all dashboards type-check; 1 type errors (printed by tsc); 2 npm/node missing or
# install failed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -gt 0 ] || { echo "usage: $0 DASHBOARD.json..." >&2; exit 2; }
command -v npm >/dev/null 2>&1 || { echo "check.sh: npm not found (apt-get install -y npm)" >&2; exit 2; }
if [ ! -x "$HERE/node_modules/.bin/tsc" ] || [ ! -d "$HERE/node_modules/@grafana/schema" ]; then
    (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) >&2 || {
        echo "check.sh: npm ci failed in $HERE" >&2; exit 2; }
fi
WORK=$(mktemp -d "$HERE/.check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
files=()
i=0
for dash in "$@"; do
    i=$((i + 1))
    ts="$WORK/dash_$i.ts"
    {
        echo "// $dash"
        echo "import type { Dashboard } from '@grafana/schema';"
        echo "import type { JsonOf } from '../wire';"
        printf 'export const dashboard: JsonOf<Dashboard> = '
        cat "$dash"
        echo ';'
    } >"$ts"
    files+=("$ts")
done
cd "$HERE"
status=0
node_modules/.bin/tsc --noEmit --strict --module esnext --moduleResolution bundler --target es2020 \
    --skipLibCheck "${files[@]}" || status=1
if [ $status -ne 0 ]; then
    i=0
    for dash in "$@"; do i=$((i + 1)); echo "dash_$i.ts = $dash" >&2; done
fi
exit $status
