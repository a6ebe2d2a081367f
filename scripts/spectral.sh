#!/usr/bin/env bash
# Lints the OpenAPI document the reference server serves with Spectral's OAS ruleset; any error or warning
# fails. Needs Go and node/npm (npx fetches Spectral into the npm cache, ~/.npm; nothing is installed
# globally).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"
SPECTRAL_VERSION=6.16.3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
OPENVAIR_OPENAPI_OUT="$work/openapi.json" go test ./refserver -run '^TestOpenAPIDocument$' -count=1 >"$work/go-test.log" 2>&1 || {
  cat "$work/go-test.log"
  [ -s "$work/openapi.json" ] || exit 1
  echo "spectral.sh: TestOpenAPIDocument failed; linting the document anyway" >&2
  failed=1
}
printf 'extends: ["spectral:oas"]\n' >"$work/.spectral.yaml"
npx --yes "@stoplight/spectral-cli@$SPECTRAL_VERSION" lint --ruleset "$work/.spectral.yaml" --fail-severity=warn "$work/openapi.json"
exit "${failed:-0}"
