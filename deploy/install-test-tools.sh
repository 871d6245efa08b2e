#!/usr/bin/env bash
# Installs what the test suite needs from Debian that pip cannot give. Called by `make test`
# before pytest; idempotent and quiet.
#
# docker-compose (Debian's 1.29): tests/unit/test_compose.py uses it only as a validator,
# `docker-compose -f docker-compose.yml config -q`, which checks the file against the Compose
# specification schema it ships, with no Docker engine. Recommends are skipped on purpose: they
# would pull in docker.io, containerd and runc, which a validator does not need.
#
# chromium (Debian's): the dashboard tests (tests/e2e/browser) drive it with Playwright for
# Python pointed at /usr/bin/chromium. Playwright's own browser download needs the internet at
# test time, which the machines that run Kizuna's tests may not have; Debian's build comes from
# the same package mirror as everything else here.
#
# Never fails the build: when a tool cannot be installed (not root, no apt-get, no registry)
# it says why and exits 0, and the test that needs it skips with that reason (fails under CI).
set -uo pipefail

say() { echo "install-test-tools: $*" >&2; }

have_validator() {
    command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1 && return 0
    command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1 && return 0
    return 1
}

have_chromium() {
    [ -x /usr/bin/chromium ] && /usr/bin/chromium --headless --no-sandbox --version >/dev/null 2>&1
}

missing=()
have_validator || missing+=(docker-compose)
have_chromium || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    say "no apt-get here; install ${missing[*]} yourself (the tests that need them skip until then)."
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    say "${missing[*]} missing and this is not root; run" \
        "'sudo apt-get install --no-install-recommends ${missing[*]}' (the tests that need them skip until then)."
    exit 0
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive

install() {
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1
}

# Update the package lists only when a package is unknown to them, or when installing from
# them fails (lists older than the mirror).
if ! { apt-cache show "${missing[@]}" >/dev/null 2>&1 && install; }; then
    if ! { apt-get update -qq >>"$log" 2>&1 && install; }; then
        say "could not install ${missing[*]}; the tests that need them will skip. apt said:"
        tail -n 15 "$log" >&2
        exit 0
    fi
fi

if [[ " ${missing[*]} " == *" docker-compose "* ]] && ! have_validator; then
    say "docker-compose installed but does not run:"
    docker-compose version >&2 || true
fi
if [[ " ${missing[*]} " == *" chromium "* ]] && ! have_chromium; then
    say "chromium installed but does not run:"
    /usr/bin/chromium --headless --no-sandbox --version >&2 || true
fi
exit 0
