#!/usr/bin/env bash
# Builds, on a machine with Rust, what scripts/gpu_check.sh --prebuilt runs on a GPU machine without
# it: the release binary (cubins embedded by NVRTC) and every device-generic test binary, stripped,
# in one tar.xz (identical sections across the binaries compress away: ~6 MB for ~20 binaries).
#
#   scripts/gpu_bundle.sh [OUT]        (default target/gpu_bundle.tar.xz)
#
# The GPU machine needs the NVIDIA driver, python3 (to unpack and to compare weights) and a glibc
# no older than this machine's. Test binaries run from the repository root there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${1:-$ROOT/target/gpu_bundle.tar.xz}"
source "$ROOT/scripts/nvrtc_env.sh"
STAGE="$ROOT/target/gpu_bundle"
rm -rf "$STAGE"
mkdir -p "$STAGE/tests" "$(dirname "$OUT")"

cargo build --release
strip -o "$STAGE/eraengine" target/release/eraengine
args=()
for t in $(gpu_test_names); do args+=(--test "$t"); done
cargo test --release --no-run --message-format=json "${args[@]}" >"$STAGE/cargo.json"
python3 - "$STAGE/cargo.json" "$STAGE/tests.txt" <<'PY'
import json, sys
rows = []
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        rows.append(f'{m["target"]["name"]} {m["executable"]}')
open(sys.argv[2], "w").write("\n".join(sorted(rows)) + "\n")
PY
while read -r name exe; do strip -o "$STAGE/tests/$name" "$exe"; done <"$STAGE/tests.txt"
{
    echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo '+dirty')"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n), $(ldd --version | head -1)"
    echo "tests $(cut -d' ' -f1 "$STAGE/tests.txt" | tr '\n' ' ')"
} >"$STAGE/manifest.txt"
rm "$STAGE/cargo.json" "$STAGE/tests.txt"
tar -C "$STAGE" -cf - . | xz -9e -T2 --lzma2=dict=192MiB >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "bundle: $OUT ($(du -h "$OUT" | cut -f1)); run there: scripts/gpu_check.sh --prebuilt $OUT"
