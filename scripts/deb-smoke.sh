#!/usr/bin/env bash
# Smoke test of the Debian package, as root: build the server, build openvair-server_<version>_amd64.deb with
# the packaging module (nfpm as a library), install it with dpkg, check the files it lays, verify the
# installed unit with systemd-analyze, run the INSTALLED /usr/bin/openvair-server once with the shipped
# /etc/openvair/server.toml (data directory and address overridden by flags: a temporary directory and a
# free port), wait for /healthz and an authenticated API call, stop it by its PID, then remove and purge the
# package. Everything it made is removed on exit, success or not.
#
#   scripts/deb-smoke.sh            (CI runs it from .ci/run)
#
# A package of another version already installed is left alone: the script refuses to run. libvirt is used
# (qemu:///system) when the system libvirtd's socket is there, otherwise the server runs without hypervisor.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"
start=$SECONDS
pkg=openvair-server
version=0.0.0-smoke   # the package version becomes 0.0.0~smoke
debversion=0.0.0~smoke

if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
say() { printf 'deb-smoke: %s\n' "$*"; }
fail() { say "FAIL: $*" >&2; exit 1; }

installed_version() { dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true; }
status_of() { dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true; }
if v=$(installed_version) && [ -n "$v" ] && [ "$v" != "$debversion" ]; then
  fail "$pkg $v is installed on this host; not touching it"
fi

tmp=$(mktemp -d /tmp/openvair-deb-smoke.XXXXXX)
pid=
installed=
cleanup() {
  rc=$?
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -n "$installed" ] && [ -n "$(status_of)" ]; then $SUDO dpkg -P "$pkg" >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
  if [ "$rc" != 0 ]; then say "failed after $((SECONDS - start))s" >&2; fi
}
trap cleanup EXIT

say "building the server"
go build -ldflags "-s -w" -o "$tmp/openvair-server" ./refserver/cmd/openvair-server

say "building the package"
deb=$(cd packaging && go run ./cmd/mkdeb -binary "$tmp/openvair-server" -version "$version" -out "$tmp")
[ "$(basename "$deb")" = "${pkg}_${debversion}_amd64.deb" ] || fail "unexpected package name $deb"
dpkg-deb -I "$deb" | sed 's/^/  /'

say "installing $(basename "$deb")"
installed=1
$SUDO dpkg -i "$deb"
[ "$(status_of)" = "install ok installed" ] || fail "status after dpkg -i: $(status_of)"
for f in /usr/bin/openvair-server /lib/systemd/system/openvair-server.service /etc/openvair/server.toml \
  /usr/share/doc/openvair-server/examples/hardening.conf; do
  [ -f "$f" ] || fail "$f is missing"
  dpkg -S "$f" >/dev/null || fail "$f does not belong to $pkg"
done
[ -x /usr/bin/openvair-server ] || fail "/usr/bin/openvair-server is not executable"
[ "$(stat -c %a /etc/openvair/server.toml)" = 600 ] || fail "/etc/openvair/server.toml is not 0600"
cmp -s "$tmp/openvair-server" /usr/bin/openvair-server || fail "/usr/bin/openvair-server is not the binary built"
if command -v systemd-analyze >/dev/null; then
  out=$(systemd-analyze verify /lib/systemd/system/openvair-server.service 2>&1) || fail "systemd-analyze verify: $out"
  if printf '%s\n' "$out" | grep -q openvair; then fail "systemd-analyze verify: $out"; fi
  say "systemd-analyze verify: the installed unit is clean"
elif [ "${OPENVAIR_REQUIRE_ALL:-}" = 1 ]; then
  fail "systemd-analyze not found (apt-get install systemd)"
fi

say "effective configuration of the installed server"
/usr/bin/openvair-server -config /etc/openvair/server.toml -print-config > "$tmp/effective.toml"
grep -qx 'data_dir = "/var/lib/openvair"' "$tmp/effective.toml" || fail "-print-config: $(cat "$tmp/effective.toml")"
grep -qx 'listen = "127.0.0.1:8080"' "$tmp/effective.toml" || fail "-print-config: listen"

uri=none
if [ -S /var/run/libvirt/libvirt-sock ]; then uri=qemu:///system; fi
say "running /usr/bin/openvair-server (libvirt_uri $uri)"
data="$tmp/data"
/usr/bin/openvair-server -config /etc/openvair/server.toml -data-dir "$data" -listen 127.0.0.1:0 \
  -libvirt-uri "$uri" >"$tmp/server.log" 2>&1 &
pid=$!
addr=
for _ in $(seq 1 600); do
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/server.log" >&2; fail "the server exited"; }
  addr=$(sed -n 's/.*msg=listening addr=\([0-9.:]*\).*/\1/p' "$tmp/server.log" | head -n1)
  [ -n "$addr" ] && curl -fsS -o /dev/null "http://$addr/healthz" 2>/dev/null && break
  addr=
  sleep 0.1
done
[ -n "$addr" ] || { cat "$tmp/server.log" >&2; fail "no answer from /healthz in 60s"; }
say "listening on $addr; /readyz: $(curl -sS "http://$addr/readyz" || true)"
token=$(cat "$data/admin.token")
code=$(curl -sS -o "$tmp/storages.json" -w '%{http_code}' -H "Authorization: Bearer $token" "http://$addr/api/v1/storages")
[ "$code" = 200 ] || fail "GET /api/v1/storages: $code $(cat "$tmp/storages.json")"
grep -q '"name":"default"' "$tmp/storages.json" || fail "no default storage: $(cat "$tmp/storages.json")"
code=$(curl -sS -o /dev/null -w '%{http_code}' "http://$addr/api/v1/storages")
[ "$code" = 401 ] || fail "GET /api/v1/storages without a token: $code"
if grep -qF "$token" "$tmp/server.log"; then fail "the admin token is in the log"; fi

say "stopping PID $pid"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
[ "$rc" = 0 ] || { cat "$tmp/server.log" >&2; fail "the server exited with $rc after SIGTERM"; }
grep -q 'msg=stopped' "$tmp/server.log" || fail "no graceful stop in the log"

say "removing"
$SUDO dpkg -r "$pkg"
[ "$(status_of)" = "deinstall ok config-files" ] || fail "status after dpkg -r: $(status_of)"
for f in /usr/bin/openvair-server /lib/systemd/system/openvair-server.service; do
  [ ! -e "$f" ] || fail "$f is still there after dpkg -r"
done
[ -f /etc/openvair/server.toml ] || fail "dpkg -r removed the conffile"
$SUDO dpkg -P "$pkg"
[ ! -e /etc/openvair/server.toml ] || fail "the conffile is still there after dpkg -P"
installed=

say "ok in $((SECONDS - start))s"
