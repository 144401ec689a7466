#!/bin/sh
# run_inspect_cli.sh HYPURA TESTDATA_DIR
#
# `hypura inspect` on stories260K.gguf: the text output has the expected
# lines, --json parses and has the same values; the GGUF v1 file is refused
# with exit code 1 and a message that says "GGUF v1".
set -u
hypura=$1
data=$2
model="$data/models/stories260K.gguf"
failed=0

fail() {
    echo "FAIL: $*"
    failed=$((failed + 1))
}

if [ ! -f "$model" ]; then
    echo "FAIL: test data not found: $model"
    echo "hint: the golden tests read ../shared/testdata next to the source tree"
    exit 1
fi

text=$("$hypura" inspect "$model") || fail "hypura inspect $model: exit code $?"
for line in "architecture: llama" "layers: 5" "embedding: 64" "heads: 8" "kv heads: 4" "vocab: 512" \
    "tensors: 48" "data offset: 14176" "alignment: 32" "gguf version: 3" "tokenizer: llama"; do
    printf '%s\n' "$text" | grep -qxF "$line" || fail "text output has no line '$line'"
done

# --tensors and --kv add sections
"$hypura" inspect "$model" --tensors --kv | grep -q "blk.4.ffn_down.weight" || fail "--tensors does not list blk.4.ffn_down.weight"
"$hypura" inspect "$model" --kv | grep -q "llama.attention.head_count_kv" || fail "--kv does not list llama.attention.head_count_kv"

json=$("$hypura" inspect "$model" --json) || fail "hypura inspect --json: exit code $?"
printf '%s' "$json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
h = d["hparams"]
want = [
    (d["architecture"], "llama", "architecture"),
    (h["n_layer"], 5, "hparams.n_layer"),
    (h["n_embd"], 64, "hparams.n_embd"),
    (h["n_head"], 8, "hparams.n_head"),
    (h["n_head_kv"], 4, "hparams.n_head_kv"),
    (d["vocab"]["n_tokens"], 512, "vocab.n_tokens"),
    (d["n_tensors"], 48, "n_tensors"),
    (len(d["tensors"]), 48, "len(tensors)"),
    (d["data_offset"], 14176, "data_offset"),
    (d["gguf_version"], 3, "gguf_version"),
    (d["metadata"]["llama.block_count"], 5, "metadata[llama.block_count]"),
]
bad = [f"{name}: {got!r}, expected {exp!r}" for got, exp, name in want if got != exp]
for b in bad:
    print("FAIL: --json " + b)
sys.exit(1 if bad else 0)
' || fail "--json output does not parse or has wrong values"

v1="$data/models/tinyllamas-stories-260k-f32.gguf"
err=$("$hypura" inspect "$v1" 2>&1 >/dev/null)
rc=$?
[ "$rc" -eq 1 ] || fail "hypura inspect on the GGUF v1 file: exit code $rc, expected 1"
printf '%s\n' "$err" | grep -F "hypura inspect: error: $v1: " | grep -qF "GGUF v1" ||
    fail "GGUF v1 file: stderr has no 'hypura inspect: error: $v1: ... GGUF v1': $err"

rc=0
"$hypura" inspect "$data/models/tinyllamas-stories-260k-q8_0.gguf" >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 1 ] || fail "hypura inspect on the Q8_0 file with 172-element rows: exit code $rc, expected 1"

if [ "$failed" -ne 0 ]; then
    echo "$failed inspect checks FAILED"
    exit 1
fi
echo "inspect CLI checks passed"
