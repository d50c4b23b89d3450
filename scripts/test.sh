#!/usr/bin/env bash
# Runs every test of rosterd: unit tests, the integration tests in tests/ (real
# HTTP on 127.0.0.1, the real rosterd and rosterctl binaries) and the SCIM
# conformance suite in scim-tests/. Installs what the tests need when it is
# missing (Debian packages, as root or via sudo), then runs `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: "command package" pairs.
needs=()
need() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || needs+=("$2"); }
need slapd slapd            # the LDAP sync tests run a real OpenLDAP server
need ldapsearch ldap-utils  # and the LDAP benchmark compares with ldapsearch
# The web console tests drive a real Chromium through WebDriver (Debian pins the
# driver to the browser's exact build).
need chromium chromium
need chromedriver chromium-driver
need npm npm                # fetches axe-core, which the console tests run in the browser
# The mail tests run a real SMTP server: Debian's aiosmtpd for /usr/bin/python3.
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || needs+=(python3-aiosmtpd)
# The suite runs a second time on a real PostgreSQL that the tests start
# themselves (initdb / pg_ctl in a temp dir; Debian keeps them under
# /usr/lib/postgresql/<major>/bin), and the PostgreSQL tests dump with pg_dump.
if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  needs+=(postgresql)
fi

if [ "${#needs[@]}" -gt 0 ]; then
  echo "test.sh: installing ${needs[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${needs[@]}"
fi

# axe-core (npm, MPL-2.0; no Debian package) checks each console screen for
# WCAG 2.2 AA violations inside the browser tests. (Not a ROSTERD_ name: rosterd
# refuses unknown ROSTERD_* variables, and the tests start the real binary.)
axe_dir="${CARGO_TARGET_DIR:-target}/axe"
if [ ! -f "$axe_dir/package/axe.min.js" ]; then
  mkdir -p "$axe_dir"
  (cd "$axe_dir" && npm pack axe-core@4.14.1 --silent >/dev/null && tar xzf axe-core-4.14.1.tgz package/axe.min.js)
fi
AXE_CORE_JS="$(cd "$axe_dir" && pwd)/package/axe.min.js"
export AXE_CORE_JS

start=$SECONDS
cargo test --workspace --locked "$@"
echo "test.sh: sled run took $((SECONDS - start)) s"

# The integration and SCIM conformance suites again, every daemon on
# PostgreSQL (TEST_STORE: not a ROSTERD_ name, since rosterd refuses unknown
# ROSTERD_* variables and the tests start the real binary).
start=$SECONDS
# One command over the workspace, as in the sled run, so that cargo resolves the
# same features and reuses the test binaries it built there (`-p scim-tests`
# alone resolved them anew and rebuilt rosterd: 95 s of CI).
# tests/it/nodes.rs starts its own PostgreSQL database whatever TEST_STORE
# says: it ran in the sled pass above, so it is skipped here.
TEST_STORE=postgres cargo test --workspace --locked --test it --test conformance "$@" -- --skip nodes::
echo "test.sh: PostgreSQL run took $((SECONDS - start)) s"
