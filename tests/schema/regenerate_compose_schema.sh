#!/bin/sh
# Refreshes compose.schema.json (the Compose Specification JSON Schema, as bundled by the dclint npm
# package) used by tests/unit/test_bundle_compose.py, and prints dclint's findings on
# docker-compose.yml. Needs node + npm; CI does not run this (the schema is committed).
#   sh tests/schema/regenerate_compose_schema.sh [DCLINT_VERSION]
set -eu
version="${1:-3.1.0}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm install --silent --no-audit --no-fund "dclint@$version" >/dev/null
cp node_modules/dclint/schemas/compose.schema.json "$here/compose.schema.json"
echo "wrote $here/compose.schema.json (from dclint $version)"
npx dclint "$here/../../docker-compose.yml" || true
