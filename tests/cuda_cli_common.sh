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
