#!/bin/sh
# run_timeline_cli.sh SOURCE_DIR WORKDIR
#
# bench/timeline on a made-up HYPURA_CUDA_TIMELINE file of three parts: the
# GPU's busy and idle time (nested spans counted once, gaps before the op
# that ends them), the wait for the CPU's sum after and before the pass's
# end, the wait for a started product's rows, the activations' way down,
# and clear errors for a bad line, a missing file and a bad flag.
set -u
src=$1
dir=$2
failed=0

fail() {
    echo "FAIL: $*"
    failed=$((failed + 1))
}

mkdir -p "$dir"
tl="$dir/t.tl"
# part 1: ops 0-10, 12-20 (a gemm with a nested part), a pass ending at 30,
# the wait 40-50 (reached 10 us after the sum); part 2: a pass ending at 100,
# the wait 80-104 (reached first: it ends 4 us after the sum), 6 us idle before it;
# part 3: CPU rows ending at 30, their wait 20-37 (7 us after them), a norm
# 40-50, the activations on the host at 62 (12 us after the norm's end)
cat > "$tl" <<'T'
0 10 matvec a
12 20 gemm b
13 15 (in gemm) cublas
5 30 host CPU pass
40 50 wait for the CPU's sum, add
rebase
0 74 matvec a
60 100 host CPU pass
80 104 wait for the CPU's sum, add
rebase
0 30 host CPU rows
20 37 wait for the CPU's rows
40 50 rms_norm
51 62 host x down
T
out=$(bash "$src/bench/timeline" "$tl") || fail "exit status $?"
echo "$out" | grep -q '^| first op to last | 184 |$' || fail "covered: $(echo "$out" | grep 'first op')"
echo "$out" | grep -q '^| in ops | 153 |$' || fail "busy: $(echo "$out" | grep 'in ops')"
echo "$out" | grep -q '^| idle between them | 31 |$' || fail "idle: $(echo "$out" | grep 'idle between')"
echo "$out" | grep -q "^| wait for the CPU's sum, add | 2 | 26 | 13.0 |$" || fail "gaps before the wait"
echo "$out" | grep -q "^| reached after the sum: the op's length | 1 | 10.0 |$" || fail "after the sum"
echo "$out" | grep -q "^| reached before: the sum to the op's end | 1 | 4.0 |$" || fail "before the sum"
echo "$out" | grep -q "^| reached before: the rows to the op's end | 1 | 7.0 |$" || fail "before the rows"
echo "$out" | grep -q "^| from the end of the last op before them to their arrival | 1 | 12.0 |$" ||
    fail "activations down: $(echo "$out" | grep 'last op before')"

printf '1 2 a\nx y\n' > "$dir/bad.tl"
err=$(bash "$src/bench/timeline" "$dir/bad.tl" 2>&1) && fail "a bad line was taken"
echo "$err" | grep -q 'bad.tl:2: not "start end name"' || fail "bad line message: $err"
err=$(bash "$src/bench/timeline" "$dir/none.tl" 2>&1) && fail "a missing file was taken"
echo "$err" | grep -q 'cannot read' || fail "missing file message: $err"
err=$(bash "$src/bench/timeline" --top x "$tl" 2>&1) && fail "--top x was taken"
echo "$err" | grep -q 'not a count' || fail "--top message: $err"

[ $failed -eq 0 ] && echo "run_timeline_cli: all checks passed"
exit $((failed > 0))
