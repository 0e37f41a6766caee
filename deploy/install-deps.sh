#!/bin/sh
# install-deps.sh — installs the Debian 12 packages jobgate needs to build, run and test, when
# any is missing. Quiet and quick when everything is present (one dpkg-query). Never leaves a
# system service running that it started: the packages' postinst scripts are kept from starting
# nginx, redis-server, apache2 and prometheus (policy-rc.d), and nothing in `make run` / `make test` uses
# the system's instances anyway; each starts its own.
set -eu

PACKAGES="build-essential pkg-config libhiredis-dev libjson-c-dev libssl-dev
spawn-fcgi nginx redis-server curl wrk python3 valgrind apache2
clang-14 libclang-rt-14-dev python3-prometheus-client prometheus"

missing=""
# the browser tests (tests/test_browser.py): Debian's Chromium, driven by Selenium
PACKAGES="$PACKAGES chromium chromium-driver python3-selenium"
# the two-host test (tests/test_hosts.py): `ip netns`, veth pairs and a bridge
PACKAGES="$PACKAGES iproute2"
for p in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        *" installed") ;;
        *) missing="$missing $p" ;;
    esac
done

[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing"

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install-deps: missing packages:$missing, and not root and no sudo" >&2
    exit 1
fi

# policy-rc.d exit code 101 = "action forbidden": invoke-rc.d then starts no service during the
# install. Only put there when none exists, and always removed again.
POLICY=/usr/sbin/policy-rc.d
made_policy=0
cleanup() {
    if [ "$made_policy" -eq 1 ]; then
        $SUDO rm -f "$POLICY"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    made_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing </dev/null

# Belt and braces, for systems where a service was started anyway (no invoke-rc.d, or a policy
# file that allowed it): stop the ones these packages may have started. Only when we installed
# the package just now, so that a service someone runs on purpose is left alone.
for svc in nginx redis-server apache2 prometheus; do
    case " $missing " in
        *" $svc "*)
            if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
                $SUDO systemctl stop "$svc" >/dev/null 2>&1 || true
                $SUDO systemctl disable "$svc" >/dev/null 2>&1 || true
            elif command -v service >/dev/null 2>&1; then
                $SUDO service "$svc" stop >/dev/null 2>&1 || true
            fi
            ;;
    esac
done
echo "install-deps: done"
