#!/bin/sh
# `hypura run --chat` and `hypura serve` flags end to end:
#  - two turns piped into run --chat: two replies on stdout, a turn line each
#    on stderr, and the second turn evaluates fewer tokens than its prompt
#    has (the first turn stayed in the KV cache);
#  - serve --help exits 0; no model, an unknown --chat-template or a bad
#    --port exit 2; a port already in use exits 1 naming it.
# usage: run_chat_serve_cli.sh HYPURA MODEL.gguf WORKDIR
set -u
hypura=$1
model=$2
dir=$3
mkdir -p "$dir"
fail=0
err() { echo "FAIL: $*" >&2; fail=1; }

printf 'Hello there\nTell me more\n' |
    "$hypura" run -m "$model" --chat -p "Be brief" -n 8 --temp 0 -t 2 -c 512 \
        >"$dir/chat.out" 2>"$dir/chat.err"
[ $? -eq 0 ] || err "run --chat exited non-zero: $(tail -3 "$dir/chat.err")"
[ "$(wc -l <"$dir/chat.out")" -eq 2 ] || err "run --chat: want 2 reply lines, got: $(cat "$dir/chat.out")"
grep -q "using ChatML" "$dir/chat.err" || err "run --chat: no ChatML warning for a model without a template"
t1=$(grep -c '^\[turn 1: ' "$dir/chat.err")
[ "$t1" -eq 1 ] || err "run --chat: no turn 1 line"
line=$(grep '^\[turn 2: ' "$dir/chat.err")
n_prompt=$(echo "$line" | sed -n 's/.*prompt \([0-9]*\) tokens, \([0-9]*\) evaluated.*/\1/p')
n_eval=$(echo "$line" | sed -n 's/.*prompt \([0-9]*\) tokens, \([0-9]*\) evaluated.*/\2/p')
if [ -z "$n_prompt" ] || [ -z "$n_eval" ]; then
    err "run --chat: no turn 2 line: $line"
elif [ "$n_eval" -ge "$n_prompt" ]; then
    err "run --chat: turn 2 evaluated $n_eval of $n_prompt tokens: the KV cache was not kept"
fi

"$hypura" serve --help >/dev/null 2>&1 || err "serve --help exited non-zero"
"$hypura" serve >/dev/null 2>&1
[ $? -eq 2 ] || err "serve without a model: want exit 2"
"$hypura" serve -m "$model" --chat-template nonsense >/dev/null 2>"$dir/serve.err"
[ $? -eq 2 ] || err "serve --chat-template nonsense: want exit 2"
grep -q "nonsense" "$dir/serve.err" || err "serve --chat-template: the error does not name the value"
"$hypura" serve -m "$model" --port 70000 >/dev/null 2>&1
[ $? -eq 2 ] || err "serve --port 70000: want exit 2"

# a port that is taken: start one server on any port, a second on the same
"$hypura" serve -m "$model" --port 0 -t 1 -c 128 2>"$dir/serve1.err" &
pid=$!
port=""
for _ in $(seq 1 100); do
    port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$dir/serve1.err")
    [ -n "$port" ] && break
    sleep 0.1
done
if [ -z "$port" ]; then
    err "serve did not start: $(cat "$dir/serve1.err")"
else
    "$hypura" serve -m "$model" --port "$port" -t 1 -c 128 >/dev/null 2>"$dir/serve2.err"
    [ $? -eq 1 ] || err "serve on a taken port: want exit 1"
    grep -q "port $port" "$dir/serve2.err" || err "serve on a taken port: the error does not name it"
fi
kill "$pid" 2>/dev/null
wait "$pid"
[ $? -eq 0 ] || err "serve did not exit 0 on SIGTERM"
exit $fail
