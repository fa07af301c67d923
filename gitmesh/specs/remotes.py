"""The remote files: `RemoteIstio` (the upstream operator's istio.banzaicloud.io/v1beta1,
Istio 1.0/1.1) and `IstiodRemote` (gitmesh.io/v1alpha1, a primary-remote cluster of an
istiod primary), one per file of `remotes/`, chosen by `kind`. Pure."""

from __future__ import annotations

import urllib.parse
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AfterValidator,
    Field,
    field_validator,
)

from gitmesh.specs.fields import (
    IANA_SVC_NAME,
    DnsLabel,
    DnsSubdomain,
    Image,
    IPAddress,
    IPRanges,
    Labels,
    LabelSelector,
    NetworkName,
    Port,
    Quantity,
    Replicas,
    Strict,
)


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
        if isinstance(v, str) and not IANA_SVC_NAME.fullmatch(v):
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
