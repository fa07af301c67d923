"""`mesh.yaml`: the mesh-wide settings (namespace, images, defaults, the central cluster and
the istiod primary, the status branch). Pure."""

from __future__ import annotations

import functools
import re
import typing
from typing import Annotated, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
)

from gitmesh.specs.fields import (
    DnsLabel,
    DnsSubdomain,
    Image,
    Replicas,
    Strict,
    ref_name_ok,
)
from gitmesh.specs.remotes import Remote

# Where the status is committed unless mesh.yaml or --status-branch says otherwise.
STATUS_BRANCH = "gitmesh/status"


class Images(Strict):
    """Mesh-wide component images (the central Istio CR carried them upstream)."""

    citadel: Image = "docker.io/istio/citadel:1.0.5"
    sidecar_injector: Image = "docker.io/istio/sidecar_injector:1.0.5"
    proxy: Image = "docker.io/istio/proxyv2:1.0.5"
    proxy_init: Image = "docker.io/istio/proxy_init:1.0.5"


class ReplicaDefaults(Strict):
    """Replica counts used when a RemoteIstio does not set its own."""

    citadel: Replicas = 1
    sidecar_injector: Replicas = 1


class Addresses(Strict):
    """Where remote sidecars reach the central control plane (host:port, or unset for the
    default: the enabled service's name in the mesh namespace)."""

    pilot: str | None = None
    policy: str | None = None
    telemetry: str | None = None
    zipkin: str | None = None


class Primary(Strict):
    """The istiod primary, as IstiodRemote files need it (in the mesh namespace)."""

    # The east-west gateway Service whose load-balancer address remotes reach istiod by.
    east_west_gateway: DnsLabel = "istio-eastwestgateway"
    # The ConfigMap istiod publishes its root certificate in (key root-cert.pem).
    root_cert_config_map: DnsSubdomain = "istio-ca-root-cert"
    # The primary istiod's cluster ID (its CLUSTER_ID, the chart's
    # global.multiCluster.clusterName), written to each remote's Istio namespace as
    # topology.istio.io/controlPlaneClusters; "*" lets any istiod that reads the remote lead.
    cluster_id: str = Field(
        "*", alias="clusterID", pattern=r"^(\*|[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$"
    )


class Central(Strict):
    """The central cluster: where the control plane and its CA live."""

    ca_secret_name: DnsSubdomain = "istio-ca-secret"  # noqa: S105 - a name, not a secret
    cluster_domain: DnsSubdomain = "cluster.local"
    addresses: Addresses = Addresses()


IstioVersion = Literal["1.0", "1.1"]
SUPPORTED_VERSIONS: tuple[str, ...] = ("1.0", "1.1")
_TAG_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:[.-]|$)")


def image_version(ref: str) -> str | None:
    """The `major.minor` an image's tag names (`docker.io/istio/citadel:1.0.5` -> `1.0`), or
    None for a digest or a tag that names no version (`latest`)."""
    name = ref.split("@", 1)[0]
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else ""
    found = _TAG_VERSION.match(tag)
    return f"{found[1]}.{found[2]}" if found else None


class Mesh(Strict):
    """`mesh.yaml`: mesh-wide settings and defaults."""

    api_version: Literal["gitmesh.io/v1alpha1"]
    kind: Literal["Mesh"]
    # Which Istio the remotes run; by default read from the image tags.
    istio_version: IstioVersion | None = None
    namespace: DnsLabel = "istio-system"
    status_branch: str = STATUS_BRANCH
    images: Images = Field(default_factory=Images, validate_default=True)
    replicas: ReplicaDefaults = ReplicaDefaults()
    central: Central = Central()
    primary: Primary = Primary()
    # A revision that removes more remotes than this (or every remote, of two or more)
    # is refused unless the pass is run with --allow-mass-prune.
    mass_prune_threshold: Annotated[int, Field(ge=0)] = 5

    @field_validator("images")
    @classmethod
    def _one_version(cls, images: Images, info: ValidationInfo) -> Images:
        explicit = info.data.get("istio_version")
        tagged = {
            field: image_version(str(ref))
            for field, ref in images.model_dump(by_alias=True).items()
        }
        known = {v for v in tagged.values() if v}
        if explicit:
            wrong = {f: v for f, v in tagged.items() if v and v != explicit}
            if wrong:
                field, version = sorted(wrong.items())[0]
                raise ValueError(
                    f"images.{field} is tagged {version} but istioVersion is {explicit}; "
                    "every component must run the same Istio"
                )
            return images
        if len(known) > 1:
            raise ValueError(
                "the images name different Istio versions "
                f"({', '.join(f'{f}: {v}' for f, v in sorted(tagged.items()) if v)}); "
                "every component must run the same Istio"
            )
        if not known:
            raise ValueError(
                "no image tag names an Istio version; set istioVersion "
                f"({' or '.join(repr(v) for v in SUPPORTED_VERSIONS)})"
            )
        (version,) = known
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(
                f"the images are Istio {version}; gitmesh renders RemoteIstio for Istio "
                f"{' and '.join(SUPPORTED_VERSIONS)}"
            )
        return images

    @functools.cached_property
    def version(self) -> IstioVersion:
        """The Istio version the remotes run (validated: explicit or from the tags)."""
        tagged = (image_version(str(ref)) for ref in self.images.model_dump().values())
        return self.istio_version or typing.cast(IstioVersion, next(v for v in tagged if v))

    @field_validator("status_branch")
    @classmethod
    def _branch(cls, v: str) -> str:
        if not ref_name_ok(v):
            raise ValueError(f"{v!r} is not a valid git branch name")
        return v


def remote_namespace(remote: Remote, mesh: Mesh) -> str:
    """The namespace on the remote where gitmesh puts the namespaced objects."""
    return remote.metadata.namespace or mesh.namespace
