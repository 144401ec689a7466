#!/bin/sh
# `hypura tokenize` end to end: on llama.cpp's GPT-2 test vocabulary
# "Hello world" must print the ids of that case of ggml-vocab-gpt-2.gguf.out
# (looked up by its position in the .inp, not written here) as one JSON
# array; the Llama 2 vocabulary adds its BOS unless --no-bos; --help lists
# every option; a missing model file exits non-zero naming the file.
# usage: run_tokenize_cli.sh HYPURA TESTDATA_DIR
set -u
hypura=$1
vocab=$2/vocab
fail=0
err() { echo "FAIL: $*" >&2; fail=1; }

# the .out line of the "Hello world" case: cases are separated by
# "\n__ggml_vocab_test__\n", so case k is the k-th run of lines before a
# separator line
line=$(awk -v want="Hello world" '
    $0 == "__ggml_vocab_test__" { if (cur == want) { print n; exit } n++; cur = ""; first = 1; next }
    { cur = first ? $0 : cur "\n" $0; first = 0 }
    BEGIN { n = 1; first = 1 }' "$vocab/ggml-vocab-gpt-2.gguf.inp")
[ -n "$line" ] || err "no \"Hello world\" case in ggml-vocab-gpt-2.gguf.inp"
ids=$(sed -n "${line}p" "$vocab/ggml-vocab-gpt-2.gguf.out" | sed 's/^ *//; s/ *$//; s/  */, /g')
want="[$ids]"

got=$("$hypura" tokenize -m "$vocab/ggml-vocab-gpt-2.gguf" -p "Hello world")
[ $? -eq 0 ] || err "tokenize exited non-zero"
[ "$got" = "$want" ] || err "gpt-2 \"Hello world\": got '$got', want '$want'"

# the same through a file
tmp=${TMPDIR:-/tmp}/hy_tokenize_$$.txt
printf 'Hello world' > "$tmp"
got=$("$hypura" tokenize -m "$vocab/ggml-vocab-gpt-2.gguf" -f "$tmp")
[ "$got" = "$want" ] || err "gpt-2 -f: got '$got', want '$want'"
rm -f "$tmp"

# SPM with BOS (add_bos_token true), and without
got=$("$hypura" tokenize -m "$vocab/ggml-vocab-llama-spm.gguf" -p "Hello world")
[ "$got" = "[1, 15043, 3186]" ] || err "llama-spm: got '$got'"
got=$("$hypura" tokenize -m "$vocab/ggml-vocab-llama-spm.gguf" -p "Hello world" --no-bos)
[ "$got" = "[15043, 3186]" ] || err "llama-spm --no-bos: got '$got'"
got=$("$hypura" tokenize -m "$vocab/ggml-vocab-llama-spm.gguf" -p "" --no-bos)
[ "$got" = "[]" ] || err "empty text: got '$got'"
# control-token text only with --parse-special
got=$("$hypura" tokenize -m "$vocab/ggml-vocab-gpt-2.gguf" -p "<|endoftext|>" --parse-special)
[ "$got" = "[50256]" ] || err "--parse-special: got '$got'"

# --help lists every option with its default
help=$("$hypura" tokenize --help)
[ $? -eq 0 ] || err "--help exited non-zero"
for opt in -m --model -p --prompt -f --file --no-bos --parse-special --help default; do
    case "$help" in *"$opt"*) ;; *) err "--help does not mention $opt" ;; esac
done

# errors: a missing file names it, bad usage exits 2
msg=$("$hypura" tokenize -m /nonexistent/model.gguf -p "x" 2>&1 >/dev/null)
rc=$?
[ $rc -ne 0 ] || err "a missing model file exited 0"
case "$msg" in *"/nonexistent/model.gguf"*) ;; *) err "error does not name the file: '$msg'" ;; esac
"$hypura" tokenize -m "$vocab/ggml-vocab-gpt-2.gguf" >/dev/null 2>&1
[ $? -eq 2 ] || err "no text should exit 2"
"$hypura" tokenize -m "$vocab/ggml-vocab-gpt-2.gguf" -p x --bogus >/dev/null 2>&1
[ $? -eq 2 ] || err "an unknown option should exit 2"

[ $fail -eq 0 ] && echo "run_tokenize_cli: all checks passed"
exit $fail
