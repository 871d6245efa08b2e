#!/usr/bin/env bash
# Installs what the test suite needs that pip cannot give. Called by `make test` before pytest;
# idempotent and quiet (nothing is done when everything is there).
#
# From Debian (apt-get, as root; the package lists are updated at most once per run, and only
# when a package is unknown to them or installing from them fails):
# - docker-compose (Debian's 1.29): tests/deploy/test_compose.py uses it only as a validator,
#   `docker-compose -f docker-compose.yml config -q`, which checks the file against the Compose
#   specification schema it ships, with no Docker engine. Recommends are skipped on purpose:
#   they would pull in docker.io, containerd and runc, which a validator does not need.
# - chromium: the dashboard tests (tests/e2e/browser) drive it with Playwright for Python
#   pointed at /usr/bin/chromium. Playwright's own browser download needs the internet at test
#   time, which the machines that run Kizuna's tests may not have; Debian's build comes from the
#   same package mirror as everything else here. fonts-ipafont-gothic: a Japanese font for it.
# - prometheus, for promtool: tests/deploy/test_monitoring.py runs `promtool check config`,
#   `check rules` and `test rules` on deploy/prometheus. The package's server is never started
#   (services are kept from starting while it installs).
# From npm: @asyncapi/parser (deploy/asyncapi/package.json, exact versions in its lock file),
# the AsyncAPI Initiative's own parser and validator; tests/deploy/test_asyncapi.py runs
# deploy/asyncapi/validate.mjs with it on docs/asyncapi.json.
#
# Never fails the build: when a tool cannot be installed (not root, no apt-get or npm, no
# registry) it says why and exits 0, and the test that needs it skips with that reason (fails
# under CI).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
say() { echo "install-test-tools: $*" >&2; }

have_compose() {
    command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1 && return 0
    command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1 && return 0
    return 1
}
have_promtool() { command -v promtool >/dev/null 2>&1 && promtool --version >/dev/null 2>&1; }
have_chromium() {
    [ -x /usr/bin/chromium ] && /usr/bin/chromium --headless --no-sandbox --version >/dev/null 2>&1
}
# A Japanese font, so the dashboard's screenshots (docs/screenshots) show text, not boxes.
have_japanese_font() { fc-list :lang=ja 2>/dev/null | grep -q .; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT

install_from_debian() {
    local missing=()
    have_compose || missing+=(docker-compose)
    have_promtool || missing+=(prometheus)
    have_chromium || missing+=(chromium)
    have_japanese_font || missing+=(fonts-ipafont-gothic)
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        say "no apt-get here; install ${missing[*]} yourself (the tests that need them skip)."
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        say "${missing[*]} missing and this is not root; run" \
            "'sudo apt-get install --no-install-recommends ${missing[*]}' (the tests that need them skip)."
        return 0
    fi
    export DEBIAN_FRONTEND=noninteractive
    # A package's server must not start on a test machine: policy-rc.d 101 forbids it.
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    install() { apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1; }
    local known=1
    for package in "${missing[@]}"; do
        apt-cache show "$package" >/dev/null 2>&1 || known=""
    done
    if ! { [ -n "$known" ] && install; }; then
        if ! { apt-get update -qq >>"$log" 2>&1 && install; }; then
            say "could not install ${missing[*]}; the tests that need them will skip. apt said:"
            tail -n 15 "$log" >&2
        fi
    fi
    [ -n "$made_policy" ] && rm -f "$policy"
    have_compose || say "docker-compose does not run after installing it."
    have_promtool || say "promtool does not run after installing prometheus."
    have_chromium || say "chromium does not run after installing it."
    return 0
}

install_from_npm() {
    local dir="$HERE/asyncapi"
    # Installed and as locked: nothing to do.
    if [ -f "$dir/node_modules/.package-lock.json" ] &&
        [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        say "no npm here; the AsyncAPI validation test skips (install Node.js 18 or later)."
        return 0
    fi
    if ! (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) >>"$log" 2>&1; then
        say "could not install @asyncapi/parser; the AsyncAPI validation test will skip. npm said:"
        tail -n 15 "$log" >&2
    fi
    return 0
}

install_from_debian
install_from_npm
exit 0
