# shellcheck shell=sh disable=SC2034,SC2154
# Sourced by the GPU checks of the command line (run_cuda_cli.sh,
# run_cuda_shapes.sh) after they set hy (the hypura binary) and dir (their
# work directory, or empty for a temporary one removed at exit).

if [ -z "$dir" ]; then
    dir=$(mktemp -d) || exit 1
    trap 'rm -rf "$dir"' EXIT
fi
mkdir -p "$dir" || exit 1
failed=0
checks=0

fail() {
    echo "FAIL: $*"
    failed=$((failed + 1))
}

# cuda_probe MODEL: one token of MODEL with --gpu on; exits 77 (skipped) when
# hypura says there is no CUDA device or the build has no CUDA, 1 on any
# other failure.
cuda_probe() {
    "$hy" run -m "$1" -p "The old clock" -n 1 --temp 0 -c 128 --gpu on >/dev/null 2>"$dir/probe.err"
    _rc=$?
    [ $_rc -eq 0 ] && return 0
    if grep -qi -e "no CUDA device" -e "built without CUDA" "$dir/probe.err"; then
        echo "skipped: $(grep -i -m1 -e "no CUDA device" -e "built without CUDA" "$dir/probe.err")"
        exit 77
    fi
    echo "FAIL: hypura run --gpu on exited $_rc: $(cat "$dir/probe.err")"
    exit 1
}

# ppl_of NAME MODEL [ARGS...]: hypura perplexity; its final estimate in pv
# (empty on failure), its output in NAME.txt / NAME.err
ppl_of() {
    _name=$1
    _model=$2
    shift 2
    pv=
    checks=$((checks + 1))
    if "$hy" perplexity -m "$_model" "$@" >"$dir/$_name.txt" 2>"$dir/$_name.err"; then
        pv=$(sed -n 's/^Final estimate: PPL = \([0-9.e+]*\) .*/\1/p' "$dir/$_name.txt")
        [ -n "$pv" ] || fail "perplexity $_name: no final estimate"
    else
        fail "perplexity $_name: exit $?: $(tail -n 2 "$dir/$_name.err")"
    fi
}
