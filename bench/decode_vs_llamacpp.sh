#!/bin/sh
# Decode and prompt speed of `hypura run` against llama.cpp's llama-bench on
# the same models, side by side in one run. Usage:
#   LLAMA_BENCH=/path/to/llama-bench bench/decode_vs_llamacpp.sh MODEL.gguf [MODEL.gguf ...]
# Environment: HYPURA (default build/bin/hypura), THREADS (default 2), N (tokens, default 128),
# REPS (default 3). Prints one markdown table row per model; ratio = hypura / llama.cpp.
set -e
HY="${HYPURA:-build/bin/hypura}"
T="${THREADS:-2}"
N="${N:-128}"
R="${REPS:-3}"
[ -n "$LLAMA_BENCH" ] || { echo "set LLAMA_BENCH to llama.cpp's llama-bench binary" >&2; exit 2; }
echo "| model | hypura decode tok/s (median of $R) | llama.cpp tg$N tok/s | ratio |"
echo "| --- | ---: | ---: | ---: |"
for m in "$@"; do
    runs=""
    i=0
    while [ $i -lt "$R" ]; do
        v=$("$HY" run -m "$m" -p "Once upon a time" -n "$N" --temp 0 -t "$T" 2>&1 >/dev/null |
            sed -n 's/^decode: .*(\([0-9.]*\) tok\/s)$/\1/p')
        runs="$runs $v"
        i=$((i + 1))
    done
    hy=$(printf '%s\n' $runs | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    lc=$("$LLAMA_BENCH" -m "$m" -p 0 -n "$N" -t "$T" -r "$R" -o csv 2>/dev/null |
         awk -F, 'NR==1 {for (i=1;i<=NF;i++) if ($i=="avg_ts" || $i=="\"avg_ts\"") c=i} NR==2 {gsub(/"/,"",$c); print $c}')
    ratio=$(awk -v a="$hy" -v b="$lc" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}')
    echo "| $(basename "$m") | $hy | $lc | $ratio |"
done
