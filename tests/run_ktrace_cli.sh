#!/bin/sh
# run_ktrace_cli.sh SOURCE_DIR WORKDIR
#
# bench/ktrace on a made-up HYPURA_CUDA_TRACE file: seven launches of two
# CTAs each, two product shapes in turn 20 us apart (the first two and the
# last two left out); each launch's wait, prologue, run, tail and span, the
# gap from the launch before; with --starts, when the CTAs started against
# the wait (CTA 1 3.5 us before it); clear errors for a file of partial records, an
# empty one (its record count and the skip named), a missing file and a bad flag.
set -u
src=$1
dir=$2
failed=0

fail() {
    echo "FAIL: $*"
    failed=$((failed + 1))
}

mkdir -p "$dir"
tr="$dir/t.tr"
python3 - "$tr" <<'P'
import struct, sys
rec = struct.Struct("<HHIIIQQQQ")
with open(sys.argv[1], "wb") as f:
    for i in range(7):
        b = 10000 + 20000 * i
        a, c = (100, 200) if i % 2 == 0 else (300, 400)
        # CTA 0: started at +0, past its wait at +1.0 us, prologue to +3.0,
        # end +8.0; CTA 1: started at -2.5, then +1.2, +3.4, +9.0
        f.write(rec.pack(1, 3, 0, a, c, b, b + 1000, b + 3000, b + 8000))
        f.write(rec.pack(1, 4, 1, a, c, b - 2500, b + 1200, b + 3400, b + 9000))
P
out=$(bash "$src/bench/ktrace" "$tr") || fail "exit status $?"
echo "$out" | grep -q ': 3 launches over 48.0 us$' || fail "covered: $(echo "$out" | head -1)"
echo "$out" | grep -q '^| product 100x200 | 2 | 12.00 | 2.10 | 5.30 | 1.00 | 8.00 |$' ||
    fail "first shape: $(echo "$out" | grep 100x200)"
echo "$out" | grep -q '^| product 300x400 | 1 | 12.00 | 2.10 | 5.30 | 1.00 | 8.00 |$' ||
    fail "second shape: $(echo "$out" | grep 300x400)"
out=$(bash "$src/bench/ktrace" --launches "$tr") || fail "--launches: exit status $?"
echo "$out" | grep -q '^| product 300x400 | 2 | 20.00 | 12.00 | 2.10 | 5.30 | 1.00 | 8.00 |$' ||
    fail "--launches: $(echo "$out" | grep '300x400 | 2 |')"
out=$(bash "$src/bench/ktrace" --starts "$tr") || fail "--starts: exit status $?"
echo "$out" | grep -q '^| product 100x200 | 2 | 2 | 1 | -3.50 / -1.00 / -1.00 |$' ||
    fail "--starts, first shape: $(echo "$out" | grep '100x200 | 2 | 2 |')"
echo "$out" | grep -q '^| product 300x400 | 1 | 2 | 1 | -3.50 / -1.00 / -1.00 |$' ||
    fail "--starts, second shape: $(echo "$out" | grep '300x400 | 1 | 2 |')"

head -c 100 "$tr" > "$dir/bad.tr"
err=$(bash "$src/bench/ktrace" "$dir/bad.tr" 2>&1) && fail "partial records were taken"
echo "$err" | grep -q 'bad.tr: 100 bytes, not a whole number of 48-byte records' ||
    fail "partial records message: $err"
: > "$dir/empty.tr"
err=$(bash "$src/bench/ktrace" "$dir/empty.tr" 2>&1) && fail "an empty trace was taken"
echo "$err" | grep -q 'empty.tr: too few launches (0 records in 0 launches;.*TRACE_SKIP' ||
    fail "empty trace message: $err"
err=$(bash "$src/bench/ktrace" "$dir/none.tr" 2>&1) && fail "a missing file was taken"
echo "$err" | grep -q 'cannot read' || fail "missing file message: $err"
err=$(bash "$src/bench/ktrace" --top 3 "$tr" 2>&1) && fail "--top was taken"
echo "$err" | grep -q 'unknown option --top' || fail "bad flag message: $err"

[ $failed -eq 0 ] && echo "run_ktrace_cli: all checks passed"
exit $((failed > 0))
