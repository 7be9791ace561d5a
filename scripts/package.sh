#!/usr/bin/env bash
# Builds the Debian package of kswarm with cargo-deb and prints its path:
#   target/debian/kswarm_VERSION-1_ARCH.deb            the package
#   target/debian/kswarm-dbgsym_VERSION-1_ARCH.ddeb    its symbols (/usr/lib/debug/.build-id/..)
# cargo-deb (a pinned version) is installed into $KSWARM_BUILD_DIR/tools on first use.
# The man page, the completions and the init script are generated from the
# release binary into target/deb-stage/ first (the assets of [package.metadata.deb]).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export KSWARM_BUILD_DIR="${KSWARM_BUILD_DIR:-$ROOT/build}"
CARGO_DEB_VERSION=3.8.0
TOOLS="$KSWARM_BUILD_DIR/tools"
CARGO_DEB="$TOOLS/bin/cargo-deb"
if ! "$CARGO_DEB" --version 2>/dev/null | grep -qF " $CARGO_DEB_VERSION"; then
  echo "package.sh: installing cargo-deb $CARGO_DEB_VERSION into $TOOLS" >&2
  cargo install --quiet --locked --root "$TOOLS" --version "$CARGO_DEB_VERSION" cargo-deb >&2
fi
for tool in dpkg-deb dpkg-shlibdeps objcopy; do
  command -v "$tool" >/dev/null || { echo "package.sh: $tool is missing; install dpkg-dev and binutils" >&2; exit 1; }
done

# KSWARM_PACKAGE_PREBUILT=1: package target/release/kswarm as it is (scripts/test.sh builds it with
# the test build's features first, so that CI compiles kswarm and kafka-protocol once, not twice).
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/kswarm"
if [[ "${KSWARM_PACKAGE_PREBUILT:-}" != 1 ]]; then
  cargo build --release --locked --bin kswarm >&2
fi
[[ -x "$BIN" ]] || { echo "package.sh: no $BIN; run cargo build --release (or leave KSWARM_PACKAGE_PREBUILT unset)" >&2; exit 1; }
STAGE="$ROOT/target/deb-stage"
rm -rf "$STAGE" && mkdir -p "$STAGE"
"$BIN" man | gzip -9n >"$STAGE/kswarm.1.gz"
"$BIN" completions bash >"$STAGE/kswarm.bash"
"$BIN" completions zsh >"$STAGE/_kswarm"
"$BIN" completions fish >"$STAGE/kswarm.fish"
# The same SysV script as for a hand install, with the binary where the package puts it, and
# Debian's init-functions: on a host that runs systemd, they hand `/etc/init.d/kswarm ACTION` to
# `systemctl ACTION kswarm` (no second kswarm outside the unit).
sed -e 's|/usr/local/bin/kswarm|/usr/bin/kswarm|g' \
  -e '/^DEFAULTS=/i [ -r /lib/lsb/init-functions ] \&\& . /lib/lsb/init-functions\n' \
  scripts/kswarm.init >"$STAGE/kswarm.init"
grep -q '^\[ -r /lib/lsb/init-functions \] && \. /lib/lsb/init-functions$' "$STAGE/kswarm.init" \
  || { echo "package.sh: no DEFAULTS= line in scripts/kswarm.init to put init-functions before" >&2; exit 1; }
grep -q '/usr/bin/kswarm' "$STAGE/kswarm.init" || { echo "package.sh: no binary path replaced in scripts/kswarm.init" >&2; exit 1; }
# The Debian changelog: this version, dated by the commit (the same input gives the same package).
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
DATE="$(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")"
cat >"$STAGE/changelog" <<CHANGELOG
kswarm ($VERSION-1) unstable; urgency=medium

  * Package of kswarm $VERSION$(git rev-parse --short HEAD 2>/dev/null | sed 's/^/ (commit /; s/$/)/').

 -- kswarm maintainers <maintainers@users.noreply.r-seed-491100d8.example>  $DATE
CHANGELOG

OUT="${CARGO_TARGET_DIR:-$ROOT/target}/debian"
mkdir -p "$OUT"
"$CARGO_DEB" --no-build --locked --dbgsym --output "$OUT" >"$STAGE/cargo-deb.out"
DEB="$(grep -E '\.deb$' "$STAGE/cargo-deb.out" | tail -n1)"
[[ -f "$DEB" ]] || { echo "package.sh: cargo-deb made no .deb:" >&2; cat "$STAGE/cargo-deb.out" >&2; exit 1; }
echo "$DEB"
