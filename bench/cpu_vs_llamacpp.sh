#!/bin/sh
# Prompt and decode speed of hypura against llama.cpp's llama-bench on the same
# GGUF files and thread count, runs interleaved (hypura, llama.cpp, hypura, ...)
# so that both see the same machine state. Prints one markdown row per model
# with the medians and the ratios hypura / llama.cpp.
#
#   LLAMA_CPP_BIN=/path/to/llama-bench (or its directory) \
#     bench/cpu_vs_llamacpp.sh [-p 512] [-n 128] [-t 2] [-r 3] MODEL.gguf ...
#
# hypura's prompt is text that tokenizes to at least -p tokens (the count it
# really had is printed); llama-bench uses -p random tokens. Both process the
# prompt in batches of 512 and generate -n tokens after it.
set -e
P=512 N=128 T=2 R=3
while getopts p:n:t:r: o; do
    case $o in p) P=$OPTARG ;; n) N=$OPTARG ;; t) T=$OPTARG ;; r) R=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
HY="${HYPURA:-build/bin/hypura}"
LB="${LLAMA_CPP_BIN:?set LLAMA_CPP_BIN to llama.cpp\'s llama-bench (or the directory holding it)}"
[ -d "$LB" ] && LB="$LB/llama-bench"
[ -x "$LB" ] || { echo "not executable: $LB" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print 0}'; }

echo "| model | size | hypura pp tok/s | llama.cpp pp$P tok/s | ratio | hypura tg tok/s | llama.cpp tg$N tok/s | ratio |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for m in "$@"; do
    # a prompt of at least P tokens
    words="Once upon a time there was a little girl named Lily who loved to play in the park with her dog"
    : > "$tmp/prompt.txt"
    while :; do
        printf '%s ' "$words" >> "$tmp/prompt.txt"
        n=$("$HY" tokenize -m "$m" -f "$tmp/prompt.txt" 2>/dev/null | tr -cd ',' | wc -c)
        [ "$n" -ge "$P" ] && break
    done
    : > "$tmp/hy_pp"; : > "$tmp/hy_tg"; : > "$tmp/lc_pp"; : > "$tmp/lc_tg"
    i=0
    while [ $i -lt "$R" ]; do
        "$HY" run -m "$m" -f "$tmp/prompt.txt" -n "$N" --temp 0 -t "$T" -b 512 -c $((P + N + 64)) \
            --stats-json "$tmp/s.json" > /dev/null 2> "$tmp/run.log"
        python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['prompt_tok_per_s']); print(d['gen_tok_per_s'], file=sys.stderr); print(d['n_prompt'], file=open(sys.argv[2],'w'))" \
            "$tmp/s.json" "$tmp/np" >> "$tmp/hy_pp" 2>> "$tmp/hy_tg"
        "$LB" -m "$m" -p "$P" -n "$N" -t "$T" -r 1 -o csv 2>/dev/null |
            awk -F, 'NR==1 {for (i=1;i<=NF;i++) {h=$i; gsub(/"/,"",h); c[h]=i}}
                     NR>1 {g=$c["avg_ts"]; gsub(/"/,"",g); p=$c["n_prompt"]; gsub(/"/,"",p);
                           if (p+0 > 0) print g >> "'"$tmp/lc_pp"'"; else print g >> "'"$tmp/lc_tg"'"}'
        i=$((i + 1))
    done
    hp=$(median < "$tmp/hy_pp"); ht=$(median < "$tmp/hy_tg")
    lp=$(median < "$tmp/lc_pp"); lt=$(median < "$tmp/lc_tg")
    size=$(du -h "$m" | cut -f1)
    printf '| %s (%s prompt tokens) | %s | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f |\n' "$(basename "$m")" "$(cat "$tmp/np")" \
        "$size" "$hp" "$lp" "$(awk -v a="$hp" -v b="$lp" 'BEGIN{print (b>0)?a/b:0}')" \
        "$ht" "$lt" "$(awk -v a="$ht" -v b="$lt" 'BEGIN{print (b>0)?a/b:0}')"
done
