#!/bin/sh
# run_fuzz_smoke.sh FUZZ_GGUF GEN_MALFORMED TESTDATA_DIR WORKDIR SECONDS
#
# Builds a small seed corpus at test time (the valid and malformed files of
# tests/gen_malformed.c, and the first 4 KiB of stories260K.gguf, which holds
# its header start with real key/values) and runs the libFuzzer target on it
# for SECONDS. Passes when the fuzzer finds nothing; a crash leaves its input
# under WORKDIR/artifacts/ (replay: FUZZ_GGUF WORKDIR/artifacts/crash-...).
set -u
fuzz=$1
gen=$2
data=$3
work=$4
seconds=$5

rm -rf "$work/seeds" "$work/corpus"
mkdir -p "$work/seeds" "$work/corpus" "$work/artifacts" || exit 1
"$gen" --valid "$work/seeds" >/dev/null || exit 1
"$gen" "$work/seeds" >/dev/null || exit 1
if [ -f "$data/models/stories260K.gguf" ]; then
    head -c 4096 "$data/models/stories260K.gguf" >"$work/seeds/stories260K-head.gguf"
else
    echo "note: $data/models/stories260K.gguf not found; fuzzing without it"
fi

# -max_len: the largest seed is 4 KiB; -rss_limit_mb: a parse must never need
# much memory for a small input; -timeout: nor much time.
"$fuzz" -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$work/artifacts/" -print_final_stats=1 "$work/corpus" "$work/seeds"
rc=$?
if [ "$rc" -ne 0 ]; then
    echo "FAIL: fuzz_gguf exited with $rc; inputs that failed:"
    ls -l "$work/artifacts/"
    exit 1
fi
echo "fuzz_gguf: no failure in $seconds seconds"
