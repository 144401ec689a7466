#!/bin/sh
# `make demo`: synthesizes a small Mixture-of-Experts model once (random
# weights: the text it generates is noise) and runs hypura on it with a RAM
# budget below the model's size, so that the plan and the statistics show
# (the run loads everything resident until the streaming store exists).
set -e
BUILD="${1:-build}"
HY="$BUILD/bin/hypura"
MODEL="$BUILD/demo/mini-moe.gguf"
mkdir -p "$BUILD/demo"
if [ ! -f "$MODEL" ]; then
    echo "demo: synthesizing $MODEL (random weights, Mixtral-style: 8 experts, top-2)"
    "$HY" synth --like mini-moe -o "$MODEL"
fi
echo
echo "demo: $HY inspect $MODEL"
"$HY" inspect "$MODEL" | sed -n '1,2p;8,30p'
echo
echo "demo: $HY plan -m $MODEL --ram-budget 96M   (the placement a 96 MiB budget gets)"
"$HY" plan -m "$MODEL" --ram-budget 96M | sed -n '1,14p'
echo
echo "demo: $HY run -m $MODEL -p 'Once upon a time' -n 48 --ram-budget 96M --seed 42"
echo "demo: (random weights: the generated text is noise; the plan and statistics are the point)"
"$HY" run -m "$MODEL" -p "Once upon a time" -n 48 --ram-budget 96M --seed 42
