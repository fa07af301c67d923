"""What people write: the `RemoteIstio` spec and `mesh.yaml`, as pydantic v2 models.

Pure. The RemoteIstio wire format is the upstream operator's (istio.banzaicloud.io/v1beta1);
every field here takes effect when rendering. Upstream fields gitmesh does not act on are
listed in each model's `unsupported` with the reason, so a person learns why instead of
having the field silently ignored.

The models in `remotes` and `mesh`, their field types in `fields`; this module is their
face. Beside them, what reads the files: `yamlload` (YAML with positions), `meshrepo`
(a repository's files to models and problems), `profiles` (Istio's per-version facts)
and `schema` (the JSON Schemas).
"""

from __future__ import annotations

from gitmesh.specs.fields import Strict, dns_label, dns_subdomain, ip_ranges, ref_name_ok
from gitmesh.specs.mesh import (
    STATUS_BRANCH,
    IstioVersion,
    Mesh,
    Primary,
    image_version,
    remote_namespace,
)
from gitmesh.specs.remotes import (
    REMOTE_KINDS,
    IstiodRemote,
    IstiodRemoteSpec,
    IstioService,
    Remote,
    RemoteIstio,
    RemoteIstioSpec,
    ResourceRequirements,
    ServicePort,
)

__all__ = [
    "REMOTE_KINDS",
    "STATUS_BRANCH",
    "IstioService",
    "IstioVersion",
    "IstiodRemote",
    "IstiodRemoteSpec",
    "Mesh",
    "Primary",
    "Remote",
    "RemoteIstio",
    "RemoteIstioSpec",
    "ResourceRequirements",
    "ServicePort",
    "Strict",
    "dns_label",
    "dns_subdomain",
    "image_version",
    "ip_ranges",
    "ref_name_ok",
    "remote_namespace",
]
