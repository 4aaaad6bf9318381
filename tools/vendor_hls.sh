#!/bin/sh
# Vendor hls.js into hub/static/vendor/ (the watch page's HLS fallback; docs/portal.md).
#
#   tools/vendor_hls.sh [VERSION]     # default: the version below; needs npm and network
#
# The file is committed: nothing is fetched at run time, and the portal's CSP allows scripts
# from the hub only. We take the *light ESM* build, loaded by dynamic import() only when a
# viewer needs HLS:
#  - light: no subtitles, alternate audio, DRM, CMCD or interstitials, none of which a
#    station's stream has; 375 KB instead of 597 KB (about 117 KB gzipped).
#  - ESM: it does not inline the transmuxer worker as a blob: URL, which the CSP would block
#    (the page turns the worker off; fMP4 needs no transmuxing, only light parsing).
# It is saved with a .js name: module scripts demand a JavaScript MIME type, and Python's
# mimetypes knows ".mjs" only where /etc/mime.types says so.
# After a change of version: record the version and the printed sha256 sums in
# hub/static/vendor/README.md, and run tests/web/test_watch_hls.py.
set -eu
VERSION="${1:-1.7.4}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/hub/static/vendor"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

cd "$WORK"
npm pack --silent "hls.js@$VERSION" >/dev/null
tar xzf "hls.js-$VERSION.tgz"
packed="$(node -p 'require("./package/package.json").version' 2>/dev/null || echo "$VERSION")"
[ "$packed" = "$VERSION" ] || { echo "npm gave hls.js $packed, not $VERSION" >&2; exit 1; }
mkdir -p "$DEST"
cp package/dist/hls.light.min.mjs "$DEST/hls.light.min.js"
cp package/LICENSE "$DEST/hls.js-LICENSE"
echo "hls.js $VERSION (npm tarball sha1 $(sha1sum "hls.js-$VERSION.tgz" | cut -d' ' -f1))"
cd "$DEST" && sha256sum hls.light.min.js hls.js-LICENSE
