#!/bin/sh
# run_stream_cli.sh HYPURA WORKDIR
#
# `hypura run` under RAM budgets on dense synth models (llama and qwen2 shapes,
# ~130 MB): the output is token-identical to resident mode at every budget,
# through io_uring and the pread pool and in the mmap baseline; the plan
# streams (mode dense-stream, bytes read per token > 0); the peak RSS stays
# within the budget plus the fixed overhead the README states (64 MiB); a
# budget below the resident minimum is refused with the reason, the minimum
# `hypura plan` names for it, part by part. As root with
# a cgroup v1 memory controller, a run capped at budget + 256 MiB is not
# OOM-killed (skipped, with a note, elsewhere).
set -u
hypura=$1
dir=$2
failed=0
OVERHEAD=$((64 * 1024 * 1024))

fail() {
    echo "FAIL: $*"
    failed=$((failed + 1))
}

json_num() { # FILE KEY
    sed -n "s/^ *\"$2\": *\([0-9.e+-]*\).*/\1/p" "$1" | head -n 1
}

mkdir -p "$dir" || exit 1
prompt="The cat sat on the mat and looked at the dog, who was"
for arch in llama qwen2; do
    model="$dir/$arch.gguf"
    "$hypura" synth -o "$model" --like llama-3-8b --arch $arch --layers 8 --embd 1024 --ff 4096 \
        --heads 16 --kv-heads 4 --vocab 2000 --type q8_0 --force >/dev/null 2>&1 ||
        { fail "synth $arch"; continue; }
    common="-m $model -p \"$prompt\" -n 24 --temp 0 -c 512 -t 2"
    eval "\"$hypura\" run $common --mode resident" >"$dir/ref.txt" 2>"$dir/ref.err" ||
        { fail "$arch resident run: $(cat "$dir/ref.err")"; continue; }
    [ -s "$dir/ref.txt" ] || fail "$arch: resident run printed nothing"
    for budget in 104M 112M 124M 136M; do
        for io in auto pread; do
            eval "\"$hypura\" run $common --ram-budget $budget --io $io --stats-json \"$dir/s.json\"" \
                >"$dir/out.txt" 2>"$dir/err.txt"
            rc=$?
            [ $rc -eq 0 ] || { fail "$arch budget $budget io $io: exit $rc: $(tail -n 2 "$dir/err.txt")"; continue; }
            cmp -s "$dir/ref.txt" "$dir/out.txt" || fail "$arch budget $budget io $io: output differs from resident"
            grep -q '"mode": "dense-stream"' "$dir/s.json" || fail "$arch budget $budget: not dense-stream"
            bpt=$(json_num "$dir/s.json" bytes_read_per_token)
            awk "BEGIN { exit !($bpt > 0) }" || fail "$arch budget $budget: bytes_read_per_token $bpt"
            # the generation's part of the read stalls: within the run's
            gst=$(json_num "$dir/s.json" gen_io_stall_s)
            ast=$(json_num "$dir/s.json" io_stall_s)
            awk "BEGIN { exit !(\"$gst\" != \"\" && $gst + 0 >= 0 && $gst + 0 <= ${ast:-0} + 1e-6) }" ||
                fail "$arch budget $budget: gen_io_stall_s '$gst' not within io_stall_s '$ast'"
            rss=$(json_num "$dir/s.json" peak_rss_bytes)
            b=$(json_num "$dir/s.json" ram_budget_bytes)
            [ "$rss" -le $((b + OVERHEAD)) ] ||
                fail "$arch budget $budget: peak RSS $rss above budget $b + 64 MiB"
        done
    done
    eval "\"$hypura\" run $common --mode mmap" >"$dir/out.txt" 2>"$dir/err.txt" ||
        fail "$arch mmap run: $(tail -n 2 "$dir/err.txt")"
    cmp -s "$dir/ref.txt" "$dir/out.txt" || fail "$arch: mmap output differs from resident"
done

# refusals: a budget below the minimum, an unknown mode, an unknown --io
model="$dir/llama.gguf"
"$hypura" run -m "$model" -p "$prompt" -n 4 -c 512 --ram-budget 20M >/dev/null 2>"$dir/err.txt" &&
    fail "a budget below the resident minimum was accepted"
grep -q "below the resident minimum" "$dir/err.txt" || fail "no reason for the refused budget: $(cat "$dir/err.txt")"
# hypura plan counts the compute buffers as the run does: the same minimum,
# part by part, at two batch sizes
for b in 32 512; do
    "$hypura" run -m "$model" -p "$prompt" -n 4 -c 512 -b $b --ram-budget 1M >/dev/null 2>"$dir/err.txt"
    "$hypura" plan -m "$model" -c 512 -b $b --ram-budget 1M >/dev/null 2>"$dir/perr.txt" &&
        fail "plan: a budget below the resident minimum was accepted"
    r=$(sed -n 's/^hypura run: error: //p' "$dir/err.txt")
    p=$(sed -n 's/^hypura plan: error: //p' "$dir/perr.txt")
    [ -n "$r" ] && [ "$r" = "$p" ] || fail "-b $b: plan and run name different minimums: plan '$p', run '$r'"
done
"$hypura" run -m "$model" -p "$prompt" -n 4 --mode fast >/dev/null 2>"$dir/err.txt" && fail "--mode fast accepted"
grep -q "'fast'" "$dir/err.txt" || fail "--mode fast: no message naming it"
"$hypura" run -m "$model" -p "$prompt" -n 4 --io disk >/dev/null 2>"$dir/err.txt" && fail "--io disk accepted"
grep -q "'disk'" "$dir/err.txt" || fail "--io disk: no message naming it"

# the cgroup cap: budget + 256 MiB, never OOM-killed
cg=/sys/fs/cgroup/memory
if [ "$(id -u)" = 0 ] && [ -w "$cg" ] && mkdir "$cg/hypura-test-$$" 2>/dev/null; then
    budget=$((112 * 1024 * 1024))
    echo $((budget + 256 * 1024 * 1024)) >"$cg/hypura-test-$$/memory.limit_in_bytes"
    sh -c "echo \$\$ > $cg/hypura-test-$$/cgroup.procs && exec \"$hypura\" run -m \"$model\" -p \"$prompt\" -n 24 --temp 0 -c 512 --ram-budget $budget" \
        >"$dir/out.txt" 2>"$dir/err.txt"
    rc=$?
    [ $rc -eq 0 ] || fail "under a cgroup cap of budget + 256 MiB: exit $rc"
    oom=$(sed -n 's/^oom_kill //p' "$cg/hypura-test-$$/memory.oom_control" 2>/dev/null)
    [ "${oom:-0}" = 0 ] || fail "OOM kills under the cgroup cap: $oom"
    rmdir "$cg/hypura-test-$$" 2>/dev/null
else
    echo "note: no writable cgroup v1 memory controller: the cgroup cap part is skipped"
fi

[ $failed -eq 0 ] && echo "run_stream_cli: all passed"
[ $failed -eq 0 ]
