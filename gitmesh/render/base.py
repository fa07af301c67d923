"""What every renderer shares: the central cluster as rendering sees it, a component's
desired objects, and the metadata gitmesh puts on everything it makes. Pure."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from gitmesh import resources, specs
from gitmesh.resources import Obj

# What both injectors' webhooks intercept (Istio's charts, every version): pod creation.
POD_CREATE_RULES: tuple[Obj, ...] = (
    {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]},
)
# libyaml when PyYAML has it: every remote's config maps are rendered on every pass.
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump_yaml(data: Any, *, width: int = 80) -> str:
    """Deterministic YAML text for config map values. Most remotes share their values: each
    distinct one is dumped once (JSON, in C, is the key)."""
    return _dump_yaml(json.dumps(data, sort_keys=True), width)


@functools.lru_cache(maxsize=256)
def _dump_yaml(key: str, width: int) -> str:
    text: str = yaml.dump(json.loads(key), Dumper=_Dumper, sort_keys=True, width=width)
    return text


def meta(
    remote: specs.Remote,
    namespace: str,
    name: str,
    component: str,
    *,
    namespaced: bool = True,
) -> Obj:
    """ObjectMeta with the remote's labels and annotations and gitmesh's ownership labels."""
    labels = {
        **remote.metadata.labels,
        resources.MANAGED_BY: "gitmesh",
        resources.REMOTE: remote.metadata.name,
        resources.COMPONENT: component,
    }
    out: Obj = {"name": name, "labels": labels}
    if remote.metadata.annotations:
        out["annotations"] = dict(remote.metadata.annotations)
    if namespaced:
        out["namespace"] = namespace
    return out


@dataclass(frozen=True, slots=True)
class Pod:
    """A central pod as the endpoints need it."""

    name: str
    ip: str
    labels: Mapping[str, str]
    ready: bool


@dataclass(frozen=True, slots=True)
class CentralService:
    """A central Service: its selector and ports (the defaults for an enabled service)."""

    name: str
    selector: Mapping[str, str]
    ports: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Central:
    """What the central cluster looks like, as far as rendering needs it."""

    pods: tuple[Pod, ...] = ()
    services: Mapping[str, CentralService] = field(default_factory=dict)
    ca_data: Mapping[str, str] | None = None  # base64 values of the central CA secret
    pods_error: str | None = None
    ca_error: str | None = None
    # The istiod primary (IstiodRemote): the east-west gateway's load-balancer address
    # and istiod's root certificate (PEM), or why they are not known.
    gateway_address: str | None = None
    root_cert: str | None = None
    primary_error: str | None = None
    primary_warnings: tuple[str, ...] = ()  # doubtful, not wrong: the remote stays Available


@dataclass(frozen=True, slots=True)
class Component:
    """The desired objects of one component, or why they cannot be rendered."""

    name: str
    objects: tuple[Obj, ...] = ()
    error: str | None = None
    # injection only: namespaces to label for sidecar injection
    namespaces: tuple[str, ...] = ()
    # common only: labels the remote's Istio namespace must carry (it may not be gitmesh's)
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    # common only: annotations the remote's Istio namespace must carry (likewise)
    namespace_annotations: Mapping[str, str] = field(default_factory=dict)
    # rendered, but probably not what was meant (an enabled service nothing backs)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rendered:
    """Everything a remote should have, and its endpoints snapshot."""

    namespace: str
    components: tuple[Component, ...]
    endpoints: Mapping[str, tuple[str, ...]] | None
    # Why none of it can work on this remote (what the remote serves): nothing is applied.
    refused: str | None = None
