#!/bin/sh
# run_moe_smoke.sh HYPURA WORKDIR
#
# `hypura run` on a small Mixtral-style model made by `hypura synth`: exits
# 0, prints the plan and timings, and the router statistics add up: every
# layer made (tokens routed) * k picks, and tokens routed = prompt tokens +
# decode steps. Also: bad flags exit 2 with a message.
set -u
hypura=$1
dir=$2
failed=0

fail() {
    echo "FAIL: $*"
    failed=$((failed + 1))
}

mkdir -p "$dir" || exit 1
model="$dir/m.gguf"
"$hypura" synth -o "$model" --like mini-moe --layers 2 --vocab 1000 --force >/dev/null || {
    echo "FAIL: hypura synth exited $?"
    exit 1
}

"$hypura" run -m "$model" -p "The cat sat on the mat and looked at" -n 12 -c 128 -t 2 --temp 0.7 --seed 3 \
    >"$dir/out.txt" 2>"$dir/err.txt"
rc=$?
[ "$rc" -eq 0 ] || fail "hypura run exited $rc: $(cat "$dir/err.txt")"
grep -q "^plan: placement for this budget.*mode resident" "$dir/err.txt" || fail "no plan line on stderr"
grep -q "The cat sat on the mat and looked at" "$dir/out.txt" && fail "the prompt is echoed on stdout (stdout carries only the generated text)"

routed=$(sed -n 's/^experts: \([0-9]*\) tokens routed, top-\([0-9]*\) of \([0-9]*\).*/\1/p' "$dir/err.txt")
k=$(sed -n 's/^experts: \([0-9]*\) tokens routed, top-\([0-9]*\) of \([0-9]*\).*/\2/p' "$dir/err.txt")
n_prompt=$(sed -n 's/^prompt: \([0-9]*\) tokens in.*/\1/p' "$dir/err.txt")
n_decode=$(sed -n 's/^decode: \([0-9]*\) forward passes.*/\1/p' "$dir/err.txt")
if [ -z "$routed" ] || [ -z "$k" ] || [ -z "$n_prompt" ] || [ -z "$n_decode" ]; then
    fail "statistics missing from stderr: $(cat "$dir/err.txt")"
else
    [ "$routed" -eq $((n_prompt + n_decode)) ] ||
        fail "tokens routed $routed != prompt $n_prompt + decode steps $n_decode"
    layers=0
    for picks in $(sed -n 's/^  layer *[0-9]*: \([0-9]*\) picks.*/\1/p' "$dir/err.txt"); do
        layers=$((layers + 1))
        [ "$picks" -eq $((routed * k)) ] || fail "layer $((layers - 1)): $picks picks, expected $routed * $k"
    done
    [ "$layers" -eq 2 ] || fail "router statistics for $layers layers, expected 2"
fi

# bad flags: exit code 2 and a message naming the problem
for args in "--temp abc" "--top-p 2" "--mode streaming" "--bogus" "-n"; do
    # shellcheck disable=SC2086
    "$hypura" run -m "$model" $args >/dev/null 2>"$dir/bad.txt"
    rc=$?
    [ "$rc" -eq 2 ] || fail "hypura run $args: exit code $rc, expected 2"
    grep -q "error:" "$dir/bad.txt" || fail "hypura run $args: no error message"
done
"$hypura" run >/dev/null 2>&1
[ $? -eq 2 ] || fail "hypura run without -m: exit code not 2"
"$hypura" run -m "$dir/missing.gguf" >/dev/null 2>&1
[ $? -eq 1 ] || fail "hypura run on a missing file: exit code not 1"

rm -f "$model" "$dir/out.txt" "$dir/err.txt" "$dir/bad.txt"
if [ "$failed" -ne 0 ]; then
    echo "$failed check(s) failed"
    exit 1
fi
echo "run_moe_smoke: all checks passed"
