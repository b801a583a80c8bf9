#!/usr/bin/env bash
# Fetch the Apache Kafka broker for the Kafka receiver's tests: kafka_2.13 and its runtime
# dependencies from Maven Central (pom.xml beside this file, `mvn dependency:copy-dependencies`),
# run with the machine's Java (17 or newer: Kafka 4.x's class files are Java 17).
#
# The jars go to a per-version cache dir:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/kube-event-watcher/kafka/<version>/
# and the fetch is skipped when that dir is complete (a marker written after the copy). The
# last line printed on stdout is that directory; everything else goes to stderr.
#
# Environment: KEW_KAFKA_CACHE overrides the cache root (the part before <version>).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf '[kafka fetch.sh %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '[kafka fetch.sh %s] ERROR: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; exit 1; }

version=$(sed -n 's|.*<kafka.version>\(.*\)</kafka.version>.*|\1|p' "$here/pom.xml")
[ -n "$version" ] || die "cannot read <kafka.version> from $here/pom.xml"

cache_root=${KEW_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-event-watcher/kafka}
dir="$cache_root/$version"

if [ -f "$dir/.complete" ]; then
	log "Apache Kafka $version already fetched in $dir"
	echo "$dir"
	exit 0
fi

command -v mvn >/dev/null 2>&1 || die "'mvn' is not on PATH: install Maven (Debian: apt-get install maven) to fetch Kafka $version"
command -v java >/dev/null 2>&1 || die "'java' is not on PATH: install a JDK >= 17 (Debian: apt-get install openjdk-17-jre-headless)"

log "fetching Apache Kafka $version (kafka_2.13 and its runtime dependencies) from Maven Central"
tmp="$dir.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
	-DincludeScope=runtime -DoutputDirectory="$tmp" >&2 \
	|| die "mvn could not resolve org.apache.kafka:kafka_2.13:$version (see above)"
ls "$tmp"/kafka_2.13-"$version".jar >/dev/null 2>&1 || die "kafka_2.13-$version.jar is missing from the copy in $tmp"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
touch "$dir/.complete"
log "Apache Kafka $version: $(ls "$dir" | wc -l) jars in $dir"
echo "$dir"
