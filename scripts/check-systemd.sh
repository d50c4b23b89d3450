#!/usr/bin/env bash
# Checks systemd/rosterd.service: `systemd-analyze verify` passes and
# `systemd-analyze security --offline=true` rates it "OK" or better.
# Installs systemd's tools when missing. Needs target/debug/rosterd (the unit's
# ExecStart is pointed at it in a temporary copy, so verify can check it).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v systemd-analyze >/dev/null 2>&1; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends systemd
fi
[ -x target/debug/rosterd ] || cargo build --locked --bin rosterd
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s#/usr/bin/rosterd#$PWD/target/debug/rosterd#g" systemd/rosterd.service > "$tmp/rosterd.service"
systemd-analyze verify "$tmp/rosterd.service"
report=$(systemd-analyze security --offline=true "$tmp/rosterd.service" 2>&1)
line=$(printf '%s\n' "$report" | grep "Overall exposure level" || true)
echo "${line:-no rating found}"
case "$line" in
  *" OK"*|*" SAFE"*) echo "systemd unit: verify passed, security rating OK or better" ;;
  *) printf '%s\n' "$report" | tail -40; echo "systemd unit: security rating worse than OK" >&2; exit 1 ;;
esac
