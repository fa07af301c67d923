#!/usr/bin/env bash
# Builds a pinned istiod (pilot-discovery) from source through the Go module proxy, into
# ${XDG_CACHE_HOME:-$HOME/.cache}/gitmesh/istiod/<version>/, beside the chart files istiod
# reads at start (mesh config defaults, the injection template and its values) and Istio's
# CRDs. Prints that directory as its last line.
#
# Idempotent: a second run finds the binary and its stamp and only prints the directory.
# Offline once built (the module and build caches live under the Go caches, outside any
# checkout). First build on 2 cores: see README ("The real istiod tier").
#
# istio.io/istio has no tagged module versions on the proxy; it serves Istio's master as a
# pseudo-version. A small wrapper module requires it at that version (no replace
# directives are needed) and its main.go is upstream's pilot/cmd/pilot-discovery/main.go.
set -euo pipefail

ISTIO_VERSION="${GITMESH_ISTIO_VERSION:-v0.0.0-20260827124520-eed52ebb66ad}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/gitmesh/istiod"
out="$cache/$ISTIO_VERSION"
stamp="$out/.built-$ISTIO_VERSION"

if [ -f "$stamp" ] && [ -x "$out/pilot-discovery" ]; then
    echo "$out"
    exit 0
fi

command -v go >/dev/null || { echo "build-istiod: go is not on PATH" >&2; exit 1; }
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
src="$cache/src/$ISTIO_VERSION"
mkdir -p "$src/cmd/pilot-discovery" "$out"
started=$(date +%s)

cat > "$src/go.mod" <<GOMOD
module gitmesh.invalid/istiod

go 1.26.0

require istio.io/istio $ISTIO_VERSION
GOMOD
(
    cd "$src"
    # The wrapper's main is upstream's own pilot/cmd/pilot-discovery/main.go, copied.
    module_dir=$(go mod download -json "istio.io/istio@$ISTIO_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -d "$module_dir" ] || { echo "build-istiod: istio.io/istio@$ISTIO_VERSION not downloaded" >&2; exit 1; }
    cp "$module_dir/pilot/cmd/pilot-discovery/main.go" cmd/pilot-discovery/main.go
    chmod u+w cmd/pilot-discovery/main.go
    [ -f go.sum ] || go mod tidy
    echo "build-istiod: building pilot-discovery istio.io/istio@$ISTIO_VERSION" >&2
    version=$(cat "$module_dir/VERSION" 2>/dev/null || echo unknown)
    go build -trimpath -ldflags "-s -w \
        -X istio.io/istio/pkg/version.buildVersion=$version-$ISTIO_VERSION \
        -X istio.io/istio/pkg/version.buildStatus=Clean" \
        -o "$out/pilot-discovery" ./cmd/pilot-discovery
    # What istiod reads from disk, and the CRDs central needs, copied out of the module.
    rm -rf "$out/charts"
    mkdir -p "$out/charts"
    cp -r "$module_dir/manifests/charts/istio-control/istio-discovery" "$out/charts/"
    cp "$module_dir/manifests/charts/base/files/crd-all.gen.yaml" "$out/charts/"
    chmod -R u+w "$out/charts"
    echo "$version" > "$out/VERSION"
)

"$out/pilot-discovery" version -s >&2 || true
touch "$stamp"
echo "build-istiod: built in $(( $(date +%s) - started )) s, $(du -sh "$out" | cut -f1)" >&2
echo "$out"
