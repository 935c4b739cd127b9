#!/usr/bin/env bash
# Refresh the vendored browser libraries in ./vendor from the npm registry.
#
# The web bridge embeds these files at build time, so `cargo build` never
# needs npm; only this script does. To upgrade, change a version below, run
# the script, review the diff of vendor/, and commit it.
#
# Usage: web-bridge/assets/refresh-vendor.sh
set -euo pipefail

XTERM_VERSION=6.0.0
XTERM_ADDON_FIT_VERSION=0.11.0
UPLOT_VERSION=1.6.32
ASCIINEMA_PLAYER_VERSION=3.18.0

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dest="$here/vendor"

command -v npm >/dev/null || { echo "refresh-vendor: npm not found" >&2; exit 1; }
command -v node >/dev/null || { echo "refresh-vendor: node not found" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Build the new tree beside the old one and swap only when everything worked.
out="$work/out"
mkdir -p "$out"
versions="$out/VERSIONS"
: >"$versions"

# fetch NAME VERSION: download and unpack NAME@VERSION into $work/<slug>/package,
# print that directory.
fetch() {
    local name=$1 version=$2 slug tarball
    slug=${name//@/}
    slug=${slug//\//-}
    mkdir -p "$work/$slug"
    tarball=$(cd "$work/$slug" && npm pack --silent "$name@$version" | tail -n 1)
    tar -xzf "$work/$slug/$tarball" -C "$work/$slug"
    # npm pack resolves the spec exactly; make sure it gave us what we pinned.
    local got
    got=$(node -p 'require(process.argv[1]).version' "$work/$slug/package/package.json")
    if [[ "$got" != "$version" ]]; then
        echo "refresh-vendor: asked for $name@$version, got $got" >&2
        exit 1
    fi
    printf '%s\n' "$work/$slug/package"
}

# record NAME VERSION PKGDIR: append "name@version license" to VERSIONS.
record() {
    local name=$1 version=$2 pkg=$3 license
    license=$(node -p 'require(process.argv[1]).license' "$pkg/package.json")
    printf '%s@%s %s\n' "$name" "$version" "$license" >>"$versions"
}

# copy PKGDIR SRC DEST: copy one file out of the package, failing if it is missing.
copy() {
    local pkg=$1 src=$2 name=$3
    if [[ ! -f "$pkg/$src" ]]; then
        echo "refresh-vendor: $src missing from $(basename "$(dirname "$pkg")")" >&2
        exit 1
    fi
    install -m 0644 "$pkg/$src" "$out/$name"
}

pkg=$(fetch @xterm/xterm "$XTERM_VERSION")
copy "$pkg" lib/xterm.js xterm.js
copy "$pkg" css/xterm.css xterm.css
copy "$pkg" LICENSE LICENSE-xterm
record @xterm/xterm "$XTERM_VERSION" "$pkg"

pkg=$(fetch @xterm/addon-fit "$XTERM_ADDON_FIT_VERSION")
copy "$pkg" lib/addon-fit.js addon-fit.js
copy "$pkg" LICENSE LICENSE-addon-fit
record @xterm/addon-fit "$XTERM_ADDON_FIT_VERSION" "$pkg"

pkg=$(fetch uplot "$UPLOT_VERSION")
copy "$pkg" dist/uPlot.iife.min.js uPlot.iife.min.js
copy "$pkg" dist/uPlot.min.css uPlot.min.css
copy "$pkg" LICENSE LICENSE-uplot
record uplot "$UPLOT_VERSION" "$pkg"

pkg=$(fetch asciinema-player "$ASCIINEMA_PLAYER_VERSION")
copy "$pkg" dist/bundle/asciinema-player.min.js asciinema-player.min.js
copy "$pkg" dist/bundle/asciinema-player.css asciinema-player.css
copy "$pkg" LICENSE LICENSE-asciinema-player
record asciinema-player "$ASCIINEMA_PLAYER_VERSION" "$pkg"

# The bundled files carry `//# sourceMappingURL=` comments naming maps we do
# not vendor; they are harmless (browsers fetch them only with devtools open).

mkdir -p "$dest"
# Replace exactly the files this script owns, leaving anything else alone.
for f in "$out"/*; do
    install -m 0644 "$f" "$dest/$(basename "$f")"
done

echo "refresh-vendor: wrote $(ls "$out" | wc -l) files to $dest"
cat "$versions"
