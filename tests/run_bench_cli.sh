#!/bin/sh
# run_bench_cli.sh HYPURA WORKDIR
#
# `hypura bench` on a 2-layer tiny-llama synth model: with --baseline it runs
# the mmap baseline and hypura's plan (-r 2 each), prints both rows and the
# speedup, appends one JSON line per run with the documented fields (the
# synthetic prompt has exactly -p tokens), and writes an SVG that parses as
# XML. The guardrail: with HYPURA_BENCH_RAM_BYTES making the model look too
# big, the baseline is skipped with the sizes in the message, and
# --force-baseline runs it anyway. --cold says how the page cache was
# dropped. Bad flags and environment exit non-zero with a message.
set -u
hypura=$1
dir=$2
failed=0

fail() {
    echo "FAIL: $*"
    failed=$((failed + 1))
}

mkdir -p "$dir" || exit 1
export XDG_CACHE_HOME="$dir/cache"
model="$dir/m.gguf"
"$hypura" synth -o "$model" --like tiny-llama --layers 2 --force >/dev/null 2>&1 ||
    { echo "FAIL: synth"; exit 1; }

# both modes, the speedup, JSON lines, SVG
rm -f "$dir/r.jsonl" "$dir/p.svg"
"$hypura" bench -m "$model" -p 16 -n 8 -r 2 -t 1 --baseline --json "$dir/r.jsonl" \
    --plot "$dir/p.svg" >"$dir/out.txt" 2>"$dir/err.txt" ||
    fail "bench --baseline: exit $?: $(tail -n 3 "$dir/err.txt")"
grep -q '^baseline  *mmap ' "$dir/out.txt" || fail "no baseline (mmap) row: $(cat "$dir/out.txt")"
grep -q '^hypura  *resident ' "$dir/out.txt" || fail "no hypura row: $(cat "$dir/out.txt")"
grep -q '^speedup (hypura / mmap baseline, medians): prompt x[0-9.]*, decode x[0-9.]*$' \
    "$dir/out.txt" || fail "no speedup line: $(cat "$dir/out.txt")"
grep -q 'warm page cache' "$dir/out.txt" || fail "results not labelled warm"
python3 - "$dir/r.jsonl" <<'EOF' || fail "JSON lines"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 4, f"{len(lines)} lines, want 4"
runs = [json.loads(l) for l in lines]
fields = ["model", "mode", "role", "rep", "cache", "n_prompt", "n_gen", "prompt_tok_per_s",
          "gen_tok_per_s", "bytes_read_per_token", "expert_hit_rate", "peak_rss_bytes",
          "predicted_gen_tok_per_s", "timestamp"]
for r in runs:
    for f in fields:
        assert f in r, f"field {f} missing in {r}"
    assert r["cache"] == "warm", r
    assert r["n_prompt"] == 16, f"n_prompt {r['n_prompt']}, want 16"
    assert 0 < r["n_gen"] <= 8, r
    assert r["prompt_tok_per_s"] > 0 and r["gen_tok_per_s"] > 0, r
    assert r["peak_rss_bytes"] > 0, r
    assert r["expert_hit_rate"] is None, "a dense model has no expert hit rate"
assert [(r["role"], r["mode"], r["rep"]) for r in runs] == [
    ("baseline", "mmap", 1), ("baseline", "mmap", 2), ("hypura", "resident", 1),
    ("hypura", "resident", 2)], runs
assert runs[0]["predicted_gen_tok_per_s"] is None
assert runs[2]["predicted_gen_tok_per_s"] > 0
EOF
python3 -c "import xml.dom.minidom,sys; d = xml.dom.minidom.parse(sys.argv[1]); \
assert d.documentElement.tagName == 'svg'; \
assert len(d.getElementsByTagName('rect')) >= 1 + 3 * 4" "$dir/p.svg" || fail "SVG does not parse"

# a longer prompt is cut to exactly -p tokens too; --json appends
"$hypura" bench -m "$model" -p 77 -n 2 -r 1 -t 1 --json "$dir/r.jsonl" >"$dir/out.txt" 2>"$dir/err.txt" ||
    fail "bench -p 77: exit $?: $(tail -n 3 "$dir/err.txt")"
python3 -c "import json,sys; l = open(sys.argv[1]).read().splitlines(); \
assert len(l) == 5, len(l); assert json.loads(l[-1])['n_prompt'] == 77, l[-1]" "$dir/r.jsonl" ||
    fail "-p 77 did not give 77 prompt tokens, or --json did not append"
grep -q 'baseline' "$dir/out.txt" && fail "a baseline row without --baseline"

# the guardrail: the model looks larger than RAM - 4 GiB
HYPURA_BENCH_RAM_BYTES=4G "$hypura" bench -m "$model" -p 8 -n 2 -r 1 -t 1 --baseline \
    >"$dir/out.txt" 2>"$dir/err.txt" || fail "guardrail run: exit $?: $(tail -n 3 "$dir/err.txt")"
grep -q '^baseline skipped: the model file (1.28 MiB) is larger than RAM total (HYPURA_BENCH_RAM_BYTES) (4.00 GiB) - 4 GiB headroom = 0 B' \
    "$dir/out.txt" || fail "no skip message with the sizes: $(cat "$dir/out.txt")"
grep -q '^baseline  *mmap' "$dir/out.txt" && fail "the baseline ran above the guardrail"
grep -q '^speedup' "$dir/out.txt" && fail "a speedup without a baseline"
grep -q '^hypura ' "$dir/out.txt" || fail "hypura's run missing when the baseline is skipped"
HYPURA_BENCH_RAM_BYTES=4G "$hypura" bench -m "$model" -p 8 -n 2 -r 1 -t 1 --baseline \
    --force-baseline >"$dir/out.txt" 2>"$dir/err.txt" || fail "--force-baseline: exit $?"
grep -q '^baseline  *mmap' "$dir/out.txt" || fail "--force-baseline did not run the baseline"
grep -q 'anyway (--force-baseline)' "$dir/err.txt" || fail "--force-baseline ran without a warning"
HYPURA_BENCH_RAM_BYTES=1T "$hypura" bench -m "$model" -p 8 -n 2 -r 1 -t 1 --baseline \
    >"$dir/out.txt" 2>"$dir/err.txt" || fail "below the guardrail: exit $?"
grep -q '^baseline  *mmap' "$dir/out.txt" || fail "the baseline was skipped below the guardrail"

# --cold drops the file from the page cache and says how
"$hypura" bench -m "$model" -p 8 -n 2 -r 1 -t 1 --cold >"$dir/out.txt" 2>"$dir/err.txt" ||
    fail "--cold: exit $?"
grep -q 'cold page cache' "$dir/out.txt" || fail "--cold results not labelled cold"
grep -q '^bench: page cache: posix_fadvise' "$dir/err.txt" || fail "--cold did not say what it did"

# bad input
expect_fail() { # MESSAGE-PATTERN ARGS...
    pat=$1
    shift
    "$@" >"$dir/bad.out" 2>"$dir/bad.err"
    rc=$?
    [ $rc -ne 0 ] || fail "'$*' exited 0"
    grep -q "$pat" "$dir/bad.err" || fail "'$*': no '$pat' in: $(cat "$dir/bad.err")"
}
expect_fail "unknown option '--bogus'" "$hypura" bench -m "$model" --bogus
expect_fail "no model given" "$hypura" bench -p 8
expect_fail "option -r" "$hypura" bench -m "$model" -r 0
expect_fail "option -p" "$hypura" bench -m "$model" -p x
expect_fail "the mmap baseline is --baseline" "$hypura" bench -m "$model" --mode mmap
expect_fail "is not auto, resident" "$hypura" bench -m "$model" --mode fast
expect_fail "force-baseline without --baseline" "$hypura" bench -m "$model" --force-baseline
expect_fail "do not fit a context of 16" "$hypura" bench -m "$model" -p 12 -n 8 -c 16
expect_fail "$dir/none.gguf" "$hypura" bench -m "$dir/none.gguf"
expect_fail "HYPURA_BENCH_RAM_BYTES" env HYPURA_BENCH_RAM_BYTES=lots "$hypura" bench -m "$model" \
    -p 8 -n 2 -r 1 --baseline
expect_fail "below the resident minimum" "$hypura" bench -m "$model" -p 8 -n 2 -r 1 -t 1 \
    --ram-budget 1K

[ "$failed" -eq 0 ] || exit 1
echo "ok"
