#!/usr/bin/env bash
# Builds pinned kube-apiserver, kube-controller-manager and etcd from source through the Go
# module proxy, into ${XDG_CACHE_HOME:-$HOME/.cache}/gitmesh/kube-assets/<version>/, the
# directory envtest's KUBEBUILDER_ASSETS names. Prints that directory as its last line.
#
# Idempotent: a second run finds the binaries and their stamp and only prints the directory.
# Offline once built (the module and build caches live under the Go caches, outside any
# checkout). First build on 2 cores: see README ("The real kube-apiserver tier").
#
# k8s.io/kubernetes is not meant to be imported as a module: its go.mod requires its staging
# modules (k8s.io/api, k8s.io/client-go, ...) at v0.0.0 and replaces them with ./staging
# paths that don't exist in a dependency. A small wrapper module requires it and replaces
# each staging module with its published v0.<minor>.<patch> instead; one main.go per binary
# calls the upstream command constructor, exactly as cmd/<binary>/<binary>.go does.
set -euo pipefail

KUBE_VERSION="${GITMESH_KUBE_VERSION:-v1.36.3}"
# The etcd that k8s.io/kubernetes@v1.36.3's go.mod requires (go.etcd.io/etcd/server/v3).
ETCD_VERSION="${GITMESH_ETCD_VERSION:-v3.6.8}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/gitmesh/kube-assets"
out="$cache/$KUBE_VERSION"
stamp="$out/.built-$KUBE_VERSION-etcd-$ETCD_VERSION"

if [ -f "$stamp" ] && [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ] \
    && [ -x "$out/kube-controller-manager" ]; then
    echo "$out"
    exit 0
fi

command -v go >/dev/null || { echo "build-kube-assets: go is not on PATH" >&2; exit 1; }
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
minor="${KUBE_VERSION#v1.}"            # 36.3
staging_version="v0.$minor"            # v0.36.3
src="$cache/src/$KUBE_VERSION"
mkdir -p "$src/kube/cmd/kube-apiserver" "$src/kube/cmd/kube-controller-manager" \
    "$src/etcd" "$out"
started=$(date +%s)

# --- kube-apiserver and kube-controller-manager --------------------------------------
staging_modules=(
    api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
    cluster-bootstrap code-generator component-base component-helpers controller-manager
    cri-api cri-client cri-streaming csi-translation-lib dynamic-resource-allocation
    endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy
    kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission
    sample-apiserver sample-cli-plugin sample-controller streaming
)
{
    echo "module gitmesh.invalid/kube-assets"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    for m in "${staging_modules[@]}"; do
        echo "	k8s.io/$m => k8s.io/$m $staging_version"
    done
    echo ")"
} > "$src/kube/go.mod"

cat > "$src/kube/cmd/kube-apiserver/main.go" <<'GO'
// Same as k8s.io/kubernetes/cmd/kube-apiserver/apiserver.go.
package main

import (
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
GO
cat > "$src/kube/cmd/kube-controller-manager/main.go" <<'GO'
// Same as k8s.io/kubernetes/cmd/kube-controller-manager/controller-manager.go.
package main

import (
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
GO

major_minor="${KUBE_VERSION#v}"
ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
 -X k8s.io/component-base/version.gitMajor=${major_minor%%.*} \
 -X k8s.io/component-base/version.gitMinor=$(echo "$major_minor" | cut -d. -f2) \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
(
    cd "$src/kube"
    [ -f go.sum ] || go mod tidy
    echo "build-kube-assets: building kube-apiserver $KUBE_VERSION" >&2
    go build -trimpath -ldflags "$ldflags" -o "$out/kube-apiserver" ./cmd/kube-apiserver
    echo "build-kube-assets: building kube-controller-manager $KUBE_VERSION" >&2
    go build -trimpath -ldflags "$ldflags" -o "$out/kube-controller-manager" \
        ./cmd/kube-controller-manager
)

# --- etcd --------------------------------------------------------------------------------
cat > "$src/etcd/go.mod" <<GOMOD
module gitmesh.invalid/etcd-assets

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
cat > "$src/etcd/main.go" <<'GO'
// Same as go.etcd.io/etcd/server/v3/main.go.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
GO
(
    cd "$src/etcd"
    [ -f go.sum ] || go mod tidy
    echo "build-kube-assets: building etcd $ETCD_VERSION" >&2
    go build -trimpath -ldflags "-s -w" -o "$out/etcd" .
)

"$out/kube-apiserver" --version >&2
"$out/etcd" --version | head -1 >&2
touch "$stamp"
echo "build-kube-assets: built in $(( $(date +%s) - started )) s, $(du -sh "$out" | cut -f1) of binaries" >&2
echo "$out"
