#!/bin/sh
# run_iobench_cli.sh HYPURA WORKDIR
#
# `hypura iobench` on small synth models, dense (tiny-llama: the expert
# pattern is skipped) and MoE (mini-moe cut to 2 layers: expert slices read):
# exits 0 with a diagnosis line, and leaves the model file unchanged.
# `hypura profile` into a private cache directory: measures, writes the
# cache, reuses it, prints JSON. Bad flags of both exit 2.
set -u
hypura=$1
dir=$2
failed=0

fail() {
    echo "FAIL: $*"
    failed=$((failed + 1))
}

mkdir -p "$dir" || exit 1
dense="$dir/dense.gguf"
moe="$dir/moe.gguf"
"$hypura" synth --like tiny-llama -o "$dense" --force >/dev/null || { echo "FAIL: synth tiny-llama"; exit 1; }
"$hypura" synth --like mini-moe --layers 2 --vocab 1000 -o "$moe" --force >/dev/null ||
    { echo "FAIL: synth mini-moe"; exit 1; }
sum_before=$(cksum <"$moe")

"$hypura" iobench -m "$dense" --read-gb 0.05 >"$dir/dense.txt" 2>"$dir/dense.err"
rc=$?
[ "$rc" -eq 0 ] || fail "iobench on the dense model exited $rc: $(cat "$dir/dense.err")"
grep -q "^diagnosis: " "$dir/dense.txt" || fail "no diagnosis line (dense)"
grep -q "^dense model" "$dir/dense.txt" || fail "the dense model is not reported as dense"

"$hypura" iobench -m "$moe" --read-gb 0.05 >"$dir/moe.txt" 2>"$dir/moe.err"
rc=$?
[ "$rc" -eq 0 ] || fail "iobench on the MoE model exited $rc: $(cat "$dir/moe.err")"
grep -q "^diagnosis: " "$dir/moe.txt" || fail "no diagnosis line (MoE)"
grep -q "^MoE: " "$dir/moe.txt" || fail "no MoE line"
[ "$(cksum <"$moe")" = "$sum_before" ] || fail "iobench changed the model file"

"$hypura" iobench --read-gb 1 >/dev/null 2>&1
[ $? -eq 2 ] || fail "iobench without -m does not exit 2"
"$hypura" iobench -m "$dense" --bogus >/dev/null 2>&1
[ $? -eq 2 ] || fail "iobench --bogus does not exit 2"
"$hypura" iobench -m "$dense" --read-gb -1 >/dev/null 2>&1
[ $? -eq 2 ] || fail "iobench --read-gb -1 does not exit 2"
"$hypura" iobench -m "$dir/missing.gguf" >/dev/null 2>&1
[ $? -eq 1 ] || fail "iobench on a missing file does not exit 1"
"$hypura" profile --bogus >/dev/null 2>&1
[ $? -eq 2 ] || fail "profile --bogus does not exit 2"
"$hypura" profile --dir >/dev/null 2>&1
[ $? -eq 2 ] || fail "profile --dir without a value does not exit 2"

cache="$dir/cache"
rm -rf "$cache"
XDG_CACHE_HOME="$cache" "$hypura" profile --dir "$dir" >"$dir/profile.txt" 2>"$dir/profile.err"
rc=$?
[ "$rc" -eq 0 ] || fail "profile exited $rc: $(cat "$dir/profile.err")"
[ -s "$cache/hypura/profile.json" ] || fail "profile did not write the cache file"
grep -q "^hardware profile (measured" "$dir/profile.txt" || fail "first profile was not measured"
XDG_CACHE_HOME="$cache" "$hypura" profile --dir "$dir" >"$dir/profile2.txt" 2>&1
grep -q "^hardware profile (cached" "$dir/profile2.txt" || fail "second profile did not use the cache"
XDG_CACHE_HOME="$cache" "$hypura" profile --json >"$dir/profile.json" 2>&1 || fail "profile --json failed"
grep -q '"version": 1' "$dir/profile.json" || fail "profile --json printed no version"

[ "$failed" -eq 0 ] || exit 1
echo "ok"
