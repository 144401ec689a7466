#!/bin/sh
# Installs the Debian packages that building and testing hypura need, when
# they are missing. As root it runs apt-get; otherwise it prints the command.
set -e
PKGS="gcc make cmake pkg-config libjansson-dev liburing-dev libmicrohttpd-dev curl nodejs npm clang libclang-rt-14-dev python3"
missing=""
for p in $PKGS; do
    # Node.js from elsewhere (NodeSource bundles npm) serves as well
    [ "$p" = nodejs ] && command -v node >/dev/null 2>&1 && continue
    [ "$p" = npm ] && command -v npm >/dev/null 2>&1 && continue
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
    echo "deps: missing Debian packages:$missing"
    echo "deps: run: sudo apt-get install -y$missing"
    exit 1
fi
