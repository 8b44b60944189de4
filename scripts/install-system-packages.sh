#!/bin/sh
# Install the Debian packages that the tests and the demo use, when missing:
# redis-server (ACD store), sip-tester (SIPp), baresip-core (a real softphone),
# chromium and chromium-driver (browser pages), sox (audio checks) and
# iproute2 (loopback-only network namespaces for WebRTC tests).
set -eu

packages="redis-server sip-tester baresip-core chromium chromium-driver sox iproute2 util-linux"
missing=""
for package in $packages; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $package"
    fi
done

if [ -z "$missing" ]; then
    echo "system packages: all present"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "system packages missing:$missing; run this script as root or install sudo" >&2
    exit 1
fi

echo "system packages: installing$missing"
$sudo apt-get update -q
# shellcheck disable=SC2086 # the package list is meant to split into words
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
