#!/bin/sh
# run_gpu_flags_cli.sh HYPURA MODEL.gguf WORKDIR
#
# The GPU options of `hypura run` and `hypura serve` on any machine:
#   - bad values are refused with exit 2 and an error naming the option and
#     the value: --gpu maybe, --gpu-budget abc / -5G, --gpu-host foo,
#     -ngl -1 / x, and -ngl with --gpu-budget (either order);
#   - `hypura plan -ngl N` (llama.cpp's layer count as a GPU budget): the
#     budget printed grows with N up to the block count, the output head
#     first; past it, without --gpu-mem, exit 2 naming it; with --gpu-budget,
#     exit 2;
#   - without a CUDA device (or in a build without CUDA): --gpu on exits 1
#     saying so, --gpu off and --gpu auto print the same greedy text, and a
#     --gpu-budget or -ngl under --gpu auto gets a note that it is not used.
# With a device the last three are left to run_cuda_cli.sh.
set -u
hy=$1
model=$2
dir=$3
mkdir -p "$dir" || exit 1
fail=0
err() { echo "FAIL: $*" >&2; fail=1; }

# refused: CMD... EXPECTED-TEXT
refused() {
    want=$1
    shift
    "$hy" "$@" >/dev/null 2>"$dir/bad.err"
    rc=$?
    [ $rc -eq 2 ] || err "$*: exit $rc, want 2"
    grep -q -- "$want" "$dir/bad.err" || err "$*: the error does not name '$want': $(tail -n 1 "$dir/bad.err")"
}
for cmd in run serve; do
    [ $cmd = run ] && set -- -p x -n 1 || set --
    refused "option --gpu: 'maybe'" $cmd -m "$model" "$@" --gpu maybe
    refused "option --gpu-budget: 'abc'" $cmd -m "$model" "$@" --gpu-budget abc
    refused "option --gpu-budget: '-5G'" $cmd -m "$model" "$@" --gpu-budget -5G
    refused "option --gpu-host: 'foo'" $cmd -m "$model" "$@" --gpu-host foo
    refused "option -ngl: -1" $cmd -m "$model" "$@" -ngl -1
    refused "option --n-gpu-layers: 'x'" $cmd -m "$model" "$@" --n-gpu-layers x
    refused "options -ngl and --gpu-budget" $cmd -m "$model" "$@" -ngl 2 --gpu-budget 1G
    refused "options -ngl and --gpu-budget" $cmd -m "$model" "$@" --gpu-budget 1G --gpu-layers 2
done
refused "options -ngl and --gpu-budget" plan -m "$model" -ngl 2 --gpu-budget 1G

# plan -ngl: the budget of the GPU minimum, the head, then one block more a step
layers=$("$hy" plan -m "$model" 2>/dev/null | sed -n 's/^model: .*, \([0-9][0-9]*\) layers.*/\1/p')
[ -n "$layers" ] || err "plan: no layer count on its model line"
prev=
for n in $(seq 0 "$layers"); do
    b=$("$hy" plan -m "$model" -ngl "$n" --json 2>"$dir/ngl.err" |
        sed -n 's/^  "gpu_budget_bytes": \([0-9]*\),*$/\1/p')
    [ -n "$b" ] || { err "plan -ngl $n: no gpu_budget_bytes: $(tail -n 1 "$dir/ngl.err")"; break; }
    grep -q "^hypura plan: -ngl $n: GPU budget" "$dir/ngl.err" || err "plan -ngl $n: no line naming the budget"
    [ -z "$prev" ] || [ "$b" -gt "$prev" ] || err "plan -ngl $n: budget $b, not above -ngl $((n - 1))'s $prev"
    prev=$b
done
refused "-ngl $((layers + 1)) takes every layer" plan -m "$model" -ngl $((layers + 1))
"$hy" plan -m "$model" -ngl $((layers + 1)) --gpu-mem 8G >"$dir/ngl_all.txt" 2>&1 ||
    err "plan -ngl $((layers + 1)) --gpu-mem 8G: exit $?"
grep -q "weights .* placed (all)" "$dir/ngl_all.txt" ||
    err "plan -ngl $((layers + 1)) --gpu-mem 8G: not every weight on the GPU: $(grep '^gpu:' "$dir/ngl_all.txt")"

"$hy" run -m "$model" -p "Hello" -n 1 --temp 0 --gpu on >/dev/null 2>"$dir/on.err"
rc=$?
if [ $rc -eq 0 ]; then
    echo "a CUDA device is present: the no-device checks are left to run_cuda_cli.sh"
else
    [ $rc -eq 1 ] || err "--gpu on without a device: exit $rc, want 1"
    grep -q -E "no CUDA device|without CUDA" "$dir/on.err" ||
        err "--gpu on without a device: the error does not say why: $(tail -n 1 "$dir/on.err")"
    "$hy" run -m "$model" -p "Hello" -n 8 --temp 0 -t 2 --gpu off >"$dir/off.txt" 2>"$dir/off.err" ||
        err "--gpu off: exit $?"
    "$hy" run -m "$model" -p "Hello" -n 8 --temp 0 -t 2 --gpu-budget 4G >"$dir/auto.txt" 2>"$dir/auto.err" ||
        err "--gpu-budget 4G without a device: exit $?: $(tail -n 1 "$dir/auto.err")"
    cmp -s "$dir/off.txt" "$dir/auto.txt" || err "--gpu auto without a device: text differs from --gpu off"
    grep -q "^note: --gpu-budget 4.00 GiB is not used: no CUDA device" "$dir/auto.err" ||
        err "--gpu-budget 4G without a device: no note: $(grep -c . "$dir/auto.err") lines on stderr"
    grep -q "^note: --gpu-budget" "$dir/off.err" && err "--gpu off: a note about the budget"
    "$hy" run -m "$model" -p "Hello" -n 8 --temp 0 -t 2 -ngl 2 >"$dir/ngl.txt" 2>"$dir/ngl.err" ||
        err "-ngl 2 without a device: exit $?: $(tail -n 1 "$dir/ngl.err")"
    cmp -s "$dir/off.txt" "$dir/ngl.txt" || err "-ngl 2 without a device: text differs from --gpu off"
    grep -q "^note: -ngl 2 is not used: no CUDA device" "$dir/ngl.err" ||
        err "-ngl 2 without a device: no note: $(grep -c . "$dir/ngl.err") lines on stderr"
fi
[ $fail -eq 0 ] && echo "run_gpu_flags_cli: passed"
[ $fail -eq 0 ]
