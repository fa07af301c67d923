"""What people write: the `RemoteIstio` spec and `mesh.yaml`, as pydantic v2 models.

Pure. The RemoteIstio wire format is the upstream operator's (istio.banzaicloud.io/v1beta1);
every field here takes effect when rendering. Upstream fields gitmesh does not act on are
listed in each model's `unsupported` with the reason, so a person learns why instead of
having the field silently ignored.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import typing
import urllib.parse
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel

from gitmesh import quantity as quantities
from gitmesh import selectors

API_VERSION = "istio.banzaicloud.io/v1beta1"
MESH_API_VERSION = "gitmesh.io/v1alpha1"
OWNED_LABEL_PREFIXES = ("gitmesh.io/", "app.kubernetes.io/managed-by")

# Full matches only: `$` would also match before a trailing newline ("x\n").
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_IANA_SVC_NAME = re.compile(r"(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?")
_IMAGE = re.compile(r"\S+")

# Where the status is committed unless mesh.yaml or --status-branch says otherwise.
STATUS_BRANCH = "gitmesh/status"


def dns_label(value: str) -> str:
    """Accept an RFC 1123 label (what Kubernetes requires of namespace and service names)."""
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: lower-case letters, digits and '-', starting and "
            "ending with a letter or digit, at most 63 characters (RFC 1123 label)"
        )
    return value


def dns_subdomain(value: str) -> str:
    """Accept an RFC 1123 subdomain (what Kubernetes requires of most object names)."""
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: lower-case letters, digits, '-' and '.', at most "
            "253 characters (RFC 1123 subdomain)"
        )
    return value


def ip_ranges(value: str) -> str:
    """Accept `*`, the empty string, or comma-separated CIDRs."""
    if value.strip() in ("", "*"):
        return value.strip()
    parts = [p.strip() for p in value.split(",")]
    for part in parts:
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ValueError(
                f"{part!r} is not a CIDR; use '*' or comma-separated CIDRs like "
                "'10.0.0.0/8,172.16.0.0/12'"
            ) from None
    return ",".join(parts)


def label_selector(value: str) -> str:
    """Accept a Kubernetes label selector string; return its canonical form."""
    try:
        reqs = selectors.parse_labels(value)
    except selectors.SelectorError as e:
        raise ValueError(f"invalid label selector: {e}") from None
    if not reqs:
        raise ValueError("an empty selector would select every pod; name the pods' labels")
    return value.strip()


def ip_address(value: str) -> str:
    """Accept an IPv4 or IPv6 address; return its canonical form."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def quantity(value: str | int | float) -> str:
    """Accept a Kubernetes resource quantity (`100m`, `128Mi`, `2`); return it in the
    canonical form the API server answers with (`0.5` -> `500m`), so it never drifts."""
    try:
        return quantities.canonical(value)
    except quantities.QuantityError as e:
        raise ValueError(str(e)) from None


def image(value: str) -> str:
    """Accept a container image reference (no whitespace)."""
    if not value or not _IMAGE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an image reference (example: docker.io/istio/citadel:1.0.5)"
        )
    return value


def owned_label_keys(labels: dict[str, str]) -> dict[str, str]:
    """Accept labels whose keys and values are valid and not gitmesh's own."""
    for key, value in labels.items():
        if not selectors.valid_label_key(key):
            raise ValueError(f"invalid label key {key!r}")
        if not selectors.valid_label_value(str(value)):
            raise ValueError(f"invalid value {value!r} for label {key!r}")
        if key.startswith(OWNED_LABEL_PREFIXES):
            raise ValueError(f"label {key!r} is reserved: gitmesh sets it on what it manages")
    return labels


DnsLabel = Annotated[str, AfterValidator(dns_label)]
DnsSubdomain = Annotated[str, AfterValidator(dns_subdomain)]
Quantity = Annotated[str | int | float, AfterValidator(quantity)]
Image = Annotated[str, AfterValidator(image)]
Replicas = Annotated[int, Field(ge=0, le=1000)]
LabelSelector = Annotated[str, AfterValidator(label_selector)]
IPAddress = Annotated[str, AfterValidator(ip_address)]
IPRanges = Annotated[str, AfterValidator(ip_ranges)]
Labels = Annotated[dict[str, str], AfterValidator(owned_label_keys)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Strict(BaseModel):
    """Base: unknown fields are errors; camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        strict=False,
    )
    # Upstream fields that gitmesh rejects on purpose, with the reason people are told.
    unsupported: ClassVar[dict[str, str]] = {}


class ServicePort(Strict):
    """A Kubernetes core/v1 ServicePort, as far as a selector-less headless Service uses it."""

    name: DnsLabel | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    port: Port
    target_port: Port | str | None = None

    unsupported: ClassVar[dict[str, str]] = {
        "nodePort": "remote services are headless (clusterIP: None) and have no node ports",
    }

    @field_validator("target_port")
    @classmethod
    def _named_port(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, str) and not _IANA_SVC_NAME.fullmatch(v):
            raise ValueError(f"{v!r} is neither a port number nor a port name (IANA_SVC_NAME)")
        return v

    def endpoint_port(self) -> int:
        """The port the Endpoints carry: the numeric target port, else the port."""
        return self.target_port if isinstance(self.target_port, int) else self.port


def _unique_ports(ports: list[ServicePort]) -> list[ServicePort]:
    names = [p.name for p in ports]
    if len(ports) > 1 and None in names:
        raise ValueError("when a service has more than one port, every port needs a name")
    dup = {n for n in names if n is not None and names.count(n) > 1}
    if dup:
        raise ValueError(f"port names must be unique; repeated: {', '.join(sorted(dup))}")
    keys = [(p.port, p.protocol) for p in ports]
    if len(set(keys)) != len(keys):
        raise ValueError("two ports share the same port number and protocol")
    return ports


class ResourceRequirements(Strict):
    """A Kubernetes ResourceRequirements (limits and requests)."""

    limits: dict[str, Quantity] = Field(default_factory=dict)
    requests: dict[str, Quantity] = Field(default_factory=dict)

    def wire(self) -> dict[str, dict[str, str]]:
        """The Kubernetes form, quantities as strings, empty maps left out."""
        out = {}
        if self.limits:
            out["limits"] = {k: str(v) for k, v in sorted(self.limits.items())}
        if self.requests:
            out["requests"] = {k: str(v) for k, v in sorted(self.requests.items())}
        return out


class IstioService(Strict):
    """One enabled central Istio service, mirrored on the remote as a selector-less Service."""

    name: DnsLabel
    label_selector: LabelSelector | None = None
    pod_ips: list[IPAddress] = Field(default_factory=list, alias="podIPs")
    ports: Annotated[list[ServicePort], AfterValidator(_unique_ports)] = Field(default_factory=list)


_ENABLED_REASON = "{} is always deployed on a remote; remove the field"


class CitadelConfiguration(Strict):
    """Citadel on the remote: replicas, image, resources, and its CA secret."""

    replica_count: Replicas | None = None
    image: Image | None = None
    resources: ResourceRequirements | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    ca_secret_name: DnsSubdomain | None = None

    unsupported: ClassVar[dict[str, str]] = {
        "enabled": _ENABLED_REASON.format("citadel"),
        "affinity": "not supported yet; use nodeSelector",
        "tolerations": "not supported yet",
    }


class SidecarInjectorConfiguration(Strict):
    """The sidecar injector on the remote."""

    replica_count: Replicas | None = None
    image: Image | None = None
    resources: ResourceRequirements | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    rewrite_app_http_probe: bool = Field(False, alias="rewriteAppHTTPProbe")

    unsupported: ClassVar[dict[str, str]] = {
        "enabled": _ENABLED_REASON.format("the sidecar injector"),
        "affinity": "not supported yet; use nodeSelector",
        "tolerations": "not supported yet",
    }


class ProxyConfiguration(Strict):
    """The Envoy sidecar that the injector adds to pods on the remote."""

    image: Image | None = None
    resources: ResourceRequirements | None = None
    enable_core_dump: bool = False


class Metadata(Strict):
    """The part of ObjectMeta a RemoteIstio file may carry."""

    name: DnsLabel
    namespace: DnsLabel | None = None
    labels: Labels = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    unsupported: ClassVar[dict[str, str]] = {
        "uid": "server-populated; remove it",
        "resourceVersion": "server-populated; remove it",
        "creationTimestamp": "server-populated; remove it",
        "generation": "server-populated; remove it",
        "managedFields": "server-populated; remove it",
        "generateName": "a remote needs a fixed name equal to its file name",
        "finalizers": "gitmesh does not run on the remote's API server",
        "ownerReferences": "gitmesh does not run on the remote's API server",
    }


class RemoteIstioSpec(Strict):
    """The desired state of one remote cluster (upstream `RemoteIstioSpec`)."""

    enabled_services: Annotated[list[IstioService], Field(min_length=1)]
    auto_injection_namespaces: list[DnsLabel] = Field(default_factory=list)
    include_ip_ranges: IPRanges = Field("*", alias="includeIPRanges")
    exclude_ip_ranges: IPRanges = Field("", alias="excludeIPRanges")
    control_plane_security_enabled: bool = False
    citadel: CitadelConfiguration = CitadelConfiguration()
    sidecar_injector: SidecarInjectorConfiguration = SidecarInjectorConfiguration()
    proxy: ProxyConfiguration = ProxyConfiguration()
    default_resources: ResourceRequirements | None = None

    unsupported: ClassVar[dict[str, str]] = {
        "version": "the Istio version is set mesh-wide by the images in mesh.yaml",
        "proxyInit": "the proxy-init image is set mesh-wide in mesh.yaml (images.proxyInit)",
        "clusterName": "the cluster name is the file name (metadata.name)",
    }

    @field_validator("enabled_services")
    @classmethod
    def _unique_services(cls, v: list[IstioService]) -> list[IstioService]:
        names = [s.name for s in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"service names must be unique; repeated: {', '.join(dup)}")
        reserved = {"istio-citadel", "istio-sidecar-injector"} & set(names)
        if reserved:
            raise ValueError(
                f"{', '.join(sorted(reserved))} is deployed on the remote by gitmesh itself "
                "and cannot be an enabled service"
            )
        return v

    @field_validator("auto_injection_namespaces")
    @classmethod
    def _unique_namespaces(cls, v: list[str]) -> list[str]:
        dup = sorted({n for n in v if v.count(n) > 1})
        if dup:
            raise ValueError(f"namespaces must be unique; repeated: {', '.join(dup)}")
        return v


class RemoteIstio(Strict):
    """One remote cluster joined to the mesh (`remotes/<name>.yaml`)."""

    api_version: Literal["istio.banzaicloud.io/v1beta1"]
    kind: Literal["RemoteIstio"]
    metadata: Metadata
    spec: RemoteIstioSpec

    unsupported: ClassVar[dict[str, str]] = {
        "status": "gitmesh writes what it observes to the status branch; remove it",
    }


def network_name(value: str) -> str:
    """Accept an Istio network name (it becomes a label value, `topology.istio.io/network`,
    and a path segment of the injection URL)."""
    if not value or not selectors.valid_label_value(value) or "." in value:
        raise ValueError(
            f"{value!r} is not a network name: letters, digits, '-' and '_', at most 63 "
            "characters, starting and ending with a letter or digit"
        )
    return value


NetworkName = Annotated[str, AfterValidator(network_name)]


class IstiodRemoteSpec(Strict):
    """A remote joined to an istiod primary (Istio's primary-remote model, Istio >= 1.5)."""

    network: NetworkName | None = None
    injection_namespaces: list[DnsLabel] = Field(default_factory=list)
    # The API server address istiod uses (istioctl create-remote-secret --server), when it
    # is not the one gitmesh reaches the remote by.
    server: str | None = None

    @field_validator("server")
    @classmethod
    def _server(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urllib.parse.urlsplit(v)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if (
            parts.scheme != "https"
            or not parts.hostname
            or parts.username is not None
            or parts.query
            or parts.fragment
            or port == -1
            or any(c.isspace() for c in v)
        ):
            raise ValueError(
                f"{v!r} is not an https:// API server URL (https://host[:port][/path])"
            )
        return v

    @field_validator("injection_namespaces")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dup = sorted({n for n in v if v.count(n) > 1})
        if dup:
            raise ValueError(f"namespaces must be unique; repeated: {', '.join(dup)}")
        return v


class IstiodRemote(Strict):
    """One remote cluster joined to the primary's istiod (`remotes/<name>.yaml`)."""

    api_version: Literal["gitmesh.io/v1alpha1"]
    kind: Literal["IstiodRemote"]
    metadata: Metadata
    spec: IstiodRemoteSpec = IstiodRemoteSpec()

    unsupported: ClassVar[dict[str, str]] = {
        "status": "gitmesh writes what it observes to the status branch; remove it",
    }


# A remote file is one of the two models, chosen by its `kind`.
Remote = RemoteIstio | IstiodRemote
REMOTE_KINDS: dict[str, type[RemoteIstio] | type[IstiodRemote]] = {
    "RemoteIstio": RemoteIstio,
    "IstiodRemote": IstiodRemote,
}


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


def ref_name_ok(name: str) -> bool:
    """Whether `name` is a branch, tag or commit name gitmesh accepts: git's rules, and
    nothing git could read as an option or a revision expression."""
    return bool(
        re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", name)
        and ".." not in name
        and "//" not in name
        and not name.endswith((".lock", "/", "."))
    )


def remote_namespace(remote: Remote, mesh: Mesh) -> str:
    """The namespace on the remote where gitmesh puts the namespaced objects."""
    return remote.metadata.namespace or mesh.namespace
