#!/bin/sh
# run_cuda_shapes.sh HYPURA TEXT [WORKDIR]
#
# The GPU against the CPU on model shapes and types the synth test models do
# not have: `hypura synth` models of a few layers with head dimensions 64,
# 80, 96, 128 and 256, KV groups of 1 (no GQA), 3, 4, 7 and 8 (one KV head
# among them), widths that are not a multiple of 256 (576, 896: the K-quant
# files fall back to other types there), a tied output head (smollm), qwen2's
# biases, qwen3's Q/K norms, two MoE layouts, and the file types Q2_K to
# Q8_0, BF16 and F32 (F16: run_cuda_cli.sh's llama-F16).
# For each model, `hypura perplexity` of TEXT (-c 128, two chunks) with
# --gpu on must agree with --gpu off: the prompt path (-b 128), one-token
# steps (-b 1: decode's kernels and split attention) and the prompt path
# with about half the weights on the GPU (--gpu-budget). The models are
# random noise, so their greedy text is not compared (its top-1/top-2
# margins can be as small as the rounding of the activations, which the GPU
# and the CPU do in different places); the perplexities are: |ln ppl_gpu -
# ln ppl_cpu| at most SHAPES_TOL (default 5e-4) times ln ppl_cpu (on an
# H100 the largest of the 48 was 1.23e-4: Q3_K_M and Qwen3-MoE at part
# budget). A `hypura run --gpu on` of each model must exit 0 with the stats
# naming the cuda backend.
# Exit 77 (skipped) when `--gpu on` says there is no CUDA device or the build
# has no CUDA.
set -u
hy=$1
text=$2
dir=${3:-}
# shellcheck source=tests/cuda_cli_common.sh
. "$(dirname "$0")/cuda_cli_common.sh"
tol=${SHAPES_TOL:-5e-4}

# name, then hypura synth's options
shapes="smollm --arch llama --embd 576 --ff 1536 --heads 9 --kv-heads 3 --layers 3 --vocab 49152 --tied --type q4_k_m
qwen05 --arch qwen2 --embd 896 --ff 4864 --heads 14 --kv-heads 2 --layers 3 --vocab 151936 --type q4_k_m
hd80 --arch llama --embd 2560 --ff 6912 --heads 32 --kv-heads 32 --layers 2 --vocab 32000 --type q8_0
hd256 --arch llama --embd 2048 --ff 8192 --heads 8 --kv-heads 1 --head-dim 256 --layers 2 --vocab 32000 --type q4_k_m
hd96 --arch llama --embd 3072 --ff 8192 --heads 32 --kv-heads 32 --layers 2 --vocab 32064 --type q4_0
gqa7 --arch qwen2 --embd 3584 --ff 18944 --heads 28 --kv-heads 4 --layers 2 --vocab 152064 --type q4_k_m
qwen3 --like qwen3-8b --layers 2 --type q6_k
qwen3moe --like qwen3-30b-a3b --layers 2 --type q4_k_m
qwen2moe --like qwen1.5-moe-a2.7b --layers 2 --type q5_k_m
q4_1 --arch llama --embd 2048 --ff 5632 --heads 32 --kv-heads 4 --layers 2 --vocab 32000 --type q4_1
q5_0 --arch llama --embd 2048 --ff 5632 --heads 32 --kv-heads 4 --layers 2 --vocab 32000 --type q5_0
q5_1 --arch llama --embd 2048 --ff 5632 --heads 32 --kv-heads 4 --layers 2 --vocab 32000 --type q5_1
q3_k_m --arch llama --embd 2048 --ff 5632 --heads 32 --kv-heads 4 --layers 2 --vocab 32000 --type q3_k_m
q2_k --arch llama --embd 2048 --ff 5632 --heads 32 --kv-heads 4 --layers 2 --vocab 32000 --type q2_k
bf16 --arch llama --embd 2048 --ff 5632 --heads 32 --kv-heads 4 --layers 2 --vocab 32000 --type bf16
f32 --arch llama --embd 1024 --ff 2816 --heads 16 --kv-heads 4 --layers 2 --vocab 32000 --type f32"

# ppl NAME MODEL [ARGS...]: ppl_of over two 128-token chunks of TEXT
ppl() {
    _pn=$1
    _pm=$2
    shift 2
    ppl_of "$_pn" "$_pm" -f "$text" -c 128 --chunks 2 "$@"
}

# near LABEL GPU CPU: the GPU's perplexity within tol of the CPU's (in ln)
near() {
    [ -n "$2" ] && [ -n "$3" ] || return 0
    r=$(awk -v g="$2" -v c="$3" -v t="$tol" 'BEGIN { d = log(g) - log(c); if (d < 0) d = -d
        printf "ln ppl %.6f against the CPU'"'"'s %.6f, |d| / ln %.2e: %s", log(g), log(c),
               d / log(c), d <= t * log(c) ? "ok" : "over" }')
    echo "  $1: $r"
    case $r in *over) fail "$1: $r (more than $tol)" ;; esac
}

# ---- skip without a device -----------------------------------------------------------

probe=$dir/probe.gguf
"$hy" synth --arch llama --embd 256 --ff 512 --heads 4 --kv-heads 2 --layers 1 --vocab 512 \
    --type q8_0 --force -o "$probe" >/dev/null 2>"$dir/probe.err" ||
    { echo "FAIL: hypura synth: $(cat "$dir/probe.err")"; exit 1; }
cuda_probe "$probe"
rm -f "$probe"

# ---- each shape ------------------------------------------------------------------------

while read -r name opts; do
    model=$dir/$name.gguf
    # shellcheck disable=SC2086 # opts: the synth options, split on spaces
    if ! "$hy" synth $opts --force -o "$model" >/dev/null 2>"$dir/$name.synth.err"; then
        fail "$name: hypura synth $opts: $(tail -n 1 "$dir/$name.synth.err")"
        continue
    fi
    echo "== $name ($opts)"
    checks=$((checks + 1))
    if "$hy" run -m "$model" -p "The old clock in the hall" -n 16 --temp 0 -c 256 --gpu on \
        --stats-json "$dir/$name.json" >/dev/null 2>"$dir/$name.run.err"; then
        grep -q '"backend": *"cuda"' "$dir/$name.json" ||
            fail "$name: hypura run --gpu on: the stats do not name the cuda backend"
    else
        fail "$name: hypura run --gpu on: exit $?: $(tail -n 2 "$dir/$name.run.err")"
    fi
    ppl "$name.cpu" "$model" --gpu off
    cpu=$pv
    ppl "$name.gpu" "$model" --gpu on
    near "$name --gpu on" "$pv" "$cpu"
    ppl "$name.cpu1" "$model" --gpu off -b 1
    cpu1=$pv
    ppl "$name.gpu1" "$model" --gpu on -b 1
    near "$name --gpu on -b 1" "$pv" "$cpu1"
    # half the file's bytes above the GPU minimum the refusal of 1M names
    "$hy" perplexity -m "$model" -f "$text" -c 128 --chunks 2 --gpu on --gpu-budget 1M \
        >/dev/null 2>"$dir/$name.min.err"
    min=$(sed -n 's/.*GPU minimum \([0-9.]*\) \([MG]\)iB.*/\1 \2/p' "$dir/$name.min.err" |
        awk 'NR == 1 { printf "%d", $1 * ($2 == "G" ? 1024 : 1) + 1 }')
    budget=$((${min:-0} + $(stat -c %s "$model") / 2097152))M
    ppl "$name.half" "$model" --gpu on --gpu-budget "$budget"
    near "$name --gpu on --gpu-budget $budget" "$pv" "$cpu"
    rm -f "$model" # some are over 1 GB
done <<EOF
$shapes
EOF
echo "$checks checks, $failed failed"
[ "$failed" -eq 0 ]
