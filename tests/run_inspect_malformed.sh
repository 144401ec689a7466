#!/bin/sh
# run_inspect_malformed.sh GEN_MALFORMED HYPURA OUTDIR
#
# Writes every malformed case (tests/gen_malformed.c) into OUTDIR and runs
# `hypura inspect` on each: it must exit with status 1 (an error; not 0, and
# not >= 128, which would be a signal such as a crash or an abort) and print
# "hypura inspect: error: FILE: ..." on stderr, and no sanitizer report.
set -u
gen=$1
hypura=$2
out=$3

rm -rf "$out"
mkdir -p "$out" || exit 1
"$gen" "$out" || { echo "FAIL: $gen $out"; exit 1; }

n=0
failed=0
for f in "$out"/*.gguf; do
    n=$((n + 1))
    "$hypura" inspect "$f" >"$out/stdout.txt" 2>"$out/stderr.txt"
    rc=$?
    if [ "$rc" -ne 1 ]; then
        echo "FAIL: hypura inspect $f: exit code $rc, expected 1"
        cat "$out/stderr.txt"
        failed=$((failed + 1))
        continue
    fi
    # under ASan/UBSan a report also exits with 1: it must not be there
    if grep -qE "Sanitizer|runtime error|internal error" "$out/stderr.txt"; then
        echo "FAIL: hypura inspect $f: sanitizer or assertion report:"
        cat "$out/stderr.txt"
        failed=$((failed + 1))
        continue
    fi
    if ! grep -qF "hypura inspect: error: $f: " "$out/stderr.txt"; then
        echo "FAIL: hypura inspect $f: no 'hypura inspect: error: $f: ...' line on stderr; stderr was:"
        cat "$out/stderr.txt"
        failed=$((failed + 1))
    fi
    if [ -s "$out/stdout.txt" ]; then
        echo "FAIL: hypura inspect $f: printed to stdout on failure:"
        cat "$out/stdout.txt"
        failed=$((failed + 1))
    fi
done
rm -f "$out/stdout.txt" "$out/stderr.txt"

if [ "$n" -lt 60 ]; then
    echo "FAIL: only $n malformed files were generated in $out"
    exit 1
fi
if [ "$failed" -ne 0 ]; then
    echo "$failed of $n malformed files FAILED"
    exit 1
fi
echo "all $n malformed files refused with exit code 1 and an error line"
