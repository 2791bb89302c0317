#!/usr/bin/env bash
# Refreshes deny/advisory-db, the committed snapshot of the RustSec advisory database that
# `cargo deny` checks against (CI cannot reach GitHub, where the database lives).
#
#   deny/refresh-advisory-db.sh PATH     # PATH: a git clone (or mirror) of github.com/rustsec/advisory-db
#
# Copies every advisory under crates/ (all crates, not only today's dependencies: a crate added
# later is checked too) and the database's licence (CC0-1.0), and records the commit and its
# date in deny/advisory-db/SNAPSHOT, which deny/check.sh prints. Commit the result.
set -euo pipefail

src="${1:?usage: deny/refresh-advisory-db.sh PATH_TO_A_CLONE_OF_RUSTSEC_ADVISORY_DB}"
cd "$(dirname "$0")/.."
git -C "$src" rev-parse --verify -q HEAD >/dev/null || { echo "refresh-advisory-db.sh: $src is not a git clone" >&2; exit 2; }
git -C "$src" cat-file -e HEAD:crates 2>/dev/null || { echo "refresh-advisory-db.sh: $src has no crates/ (not the advisory-db?)" >&2; exit 2; }

commit="$(git -C "$src" rev-parse HEAD)"
date="$(git -C "$src" show -s --format=%cI HEAD)"
out=deny/advisory-db
rm -rf "$out"
mkdir -p "$out"
git -C "$src" archive --format=tar HEAD crates LICENSE.txt | tar -x -C "$out"
cat >"$out/SNAPSHOT" <<SNAP
source: https://github.com/rustsec/advisory-db
commit: $commit
date: $date
SNAP
echo "deny/advisory-db: $(find "$out/crates" -name '*.md' | wc -l) advisories of commit $commit ($date)"
