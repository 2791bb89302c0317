#!/usr/bin/env bash
# `cargo deny check` (advisories, bans, licenses, sources; policy in deny.toml) without network
# access to GitHub: the RustSec advisory database comes from the committed snapshot
# deny/advisory-db (refresh: deny/README.md), whose commit and date are printed first.
#
#   deny/check.sh            # needs cargo-deny (cargo install --locked cargo-deny@0.20.2)
set -euo pipefail
cd "$(dirname "$0")/.."

snapshot=deny/advisory-db
field() { sed -n "s/^$1: //p" "$snapshot/SNAPSHOT"; }
commit="$(field commit)"
date="$(field date)"
age_days=$(( ( $(date +%s) - $(date -d "$date" +%s) ) / 86400 ))
echo "RustSec advisory database: snapshot of $date (commit ${commit:0:12}, $age_days days old, $(find "$snapshot/crates" -name '*.md' | wc -l) advisories)"
if (( age_days > 90 )); then
  echo "WARNING: the advisory snapshot is more than 90 days old: advisories published since are not checked." >&2
  echo "         Refresh it: deny/refresh-advisory-db.sh PATH_TO_A_CLONE_OF_RUSTSEC_ADVISORY_DB (deny/README.md)." >&2
fi

# cargo-deny opens a database as a git repository at <db-path>/<name>-<hash of its URL>
# (deny.toml: db-urls, db-path). Build one from the snapshot, committed at the snapshot's date.
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
db="$root/advisory-db-3157b0e258782691"
mkdir -p "$db"
cp -R "$snapshot/crates" "$db/"
git -C "$db" init -q
git -C "$db" add -A
GIT_AUTHOR_DATE="$date" GIT_COMMITTER_DATE="$date" \
  git -C "$db" -c user.name=maru-ci -c user.email=ci@maru.invalid -c commit.gpgsign=false \
  commit -q -m "rustsec/advisory-db $commit"

cargo fetch --locked --quiet
MARU_ADVISORY_DBS="$root" cargo deny --workspace --locked --offline check --show-stats
