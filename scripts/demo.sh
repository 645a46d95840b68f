#!/bin/sh
# `make demo`: scaffold hello_module, build it against a real Debian kernel, check it,
# and boot-test it in QEMU. Runs from the repository root after `make setup`.
set -eu
KMOD="$(pwd)/.venv/bin/kmod-py"

# The release Debian's linux-headers-amd64 metapackage points at (installed by setup).
RELEASE=$(dpkg-query -W -f='${Depends}' linux-headers-amd64 | sed -n 's/.*linux-headers-\([^ ,]*-amd64\).*/\1/p')
if [ -z "$RELEASE" ] || [ ! -d "/lib/modules/$RELEASE/build" ]; then
    echo "demo: no Debian kernel headers found (apt-get install linux-headers-amd64)" >&2
    exit 2
fi

rm -rf demo
mkdir -p demo
cd demo
echo "\$ kmod-py new hello_module"
"$KMOD" new hello_module
cd hello_module
echo
echo "\$ kmod-py build --kernel $RELEASE"
"$KMOD" build --kernel "$RELEASE"
echo
echo "\$ kmod-py check .kmod-py/$RELEASE/hello_module.ko --kernel $RELEASE"
"$KMOD" check ".kmod-py/$RELEASE/hello_module.ko" --kernel "$RELEASE"
echo
echo "\$ kmod-py test --kernel $RELEASE"
"$KMOD" test --kernel "$RELEASE"
