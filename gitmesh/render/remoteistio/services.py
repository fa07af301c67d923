"""The `services` component of a RemoteIstio: the central Istio services the remote
reaches (selector-less Services with Endpoints of central's ready pods), and the
endpoint snapshot the status branch keeps. Pure."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from gitmesh import selectors, specs
from gitmesh.render.base import (
    Central,
    Component,
)
from gitmesh.render.remoteistio.context import Ctx, object_meta
from gitmesh.resources import Obj


def _ports(ctx: Ctx, entry: specs.IstioService) -> list[Obj]:
    if entry.ports:
        out = []
        for p in entry.ports:
            port: Obj = {
                "port": p.port,
                "protocol": p.protocol,
                "targetPort": p.target_port if p.target_port is not None else p.port,
            }
            if p.name:
                port["name"] = p.name
            out.append(port)
        return out
    central = ctx.central.services.get(entry.name)
    if central is None:
        return []
    defaults = []
    for cp in central.ports:
        port = {
            "port": cp["port"],
            "protocol": cp.get("protocol", "TCP"),
            "targetPort": cp.get("targetPort", cp["port"]),
        }
        if cp.get("name"):
            port["name"] = cp["name"]
        defaults.append(port)
    return defaults


def _endpoint_port(port: Obj) -> int:
    target = port.get("targetPort")
    return target if isinstance(target, int) else int(port["port"])


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def _ip_key(ip: str) -> tuple[int, int]:
    addr = ipaddress.ip_address(ip)
    return (addr.version, int(addr))


def selector_of(
    entry: specs.IstioService, central: Central
) -> tuple[selectors.Requirement, ...] | None:
    """The pods behind an enabled service: its labelSelector, else the central Service's."""
    if entry.label_selector:
        return selectors.parse_labels(entry.label_selector)
    found = central.services.get(entry.name)
    if found and found.selector:
        return selectors.from_match_labels(found.selector)
    return None


def follows(
    spec: specs.RemoteIstio, central: Central, changed: Sequence[Mapping[str, str]]
) -> bool:
    """Whether the remote's Endpoints follow pods with one of the `changed` label sets."""
    for entry in spec.spec.enabled_services:
        reqs = selector_of(entry, central)
        if reqs is not None and any(selectors.matches(reqs, labels) for labels in changed):
            return True
    return False


def services(ctx: Ctx) -> tuple[Component, Mapping[str, tuple[str, ...]] | None]:
    """A selector-less headless Service and its Endpoints per enabled service."""
    if ctx.central.pods_error:
        return Component(
            "services",
            error=f"cannot read the central Istio pods: "
            f"{ctx.central.pods_error}; the remotes' Endpoints are left as they "
            "are",
        ), None
    objects: list[Obj] = []
    snapshot: dict[str, tuple[str, ...]] = {}
    warnings: list[str] = []
    where = f"{ctx.mesh.namespace} on the central cluster"
    for entry in ctx.spec.enabled_services:
        ports = _ports(ctx, entry)
        if not ports:
            warnings.append(
                f"enabled service {entry.name}: no Service {entry.name} in {where} and no "
                "ports in the spec; the remote Service has no ports"
            )
        svc_spec: Obj = {"clusterIP": "None"}
        if ports:
            svc_spec["ports"] = ports
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": object_meta(ctx, entry.name, "services"),
                "spec": svc_spec,
            }
        )
        addresses, unmatched = _addresses(ctx, entry)
        if unmatched:
            warnings.append(
                f"enabled service {entry.name}: no ready pod in {where} matches "
                + unmatched
                + " and the spec lists no podIPs; its Endpoints are empty"
            )
        endpoints, snapshot[entry.name] = _endpoints(ctx, entry, ports, addresses)
        objects.append(endpoints)
    return Component("services", tuple(objects), warnings=tuple(warnings)), snapshot


def _addresses(ctx: Ctx, entry: specs.IstioService) -> tuple[list[Obj], str]:
    """The ready central pods behind an enabled service and its listed podIPs, in address
    order; when there are none, what matched nothing (for the warning)."""
    reqs = selector_of(entry, ctx.central)
    ips = {str(ip) for ip in entry.pod_ips}
    if reqs is not None:
        ips |= {
            p.ip for p in ctx.central.pods if p.ready and p.ip and selectors.matches(reqs, p.labels)
        }
    addresses = [{"ip": ip} for ip in sorted(ips, key=_ip_key)]
    if addresses:
        return addresses, ""
    if reqs is None:
        return [], "anything (no Service, no labelSelector)"
    if entry.label_selector:
        return [], f"labelSelector {entry.label_selector}"
    return [], f"the selector of Service {entry.name}"


def _endpoints(
    ctx: Ctx, entry: specs.IstioService, ports: list[Obj], addresses: list[Obj]
) -> tuple[Obj, tuple[str, ...]]:
    """The Endpoints object of an enabled service, and its snapshot ("ip:port" entries)."""
    endpoints: Obj = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": object_meta(ctx, entry.name, "services"),
    }
    ep_ports = []
    for p in ports:
        ep: Obj = {"port": _endpoint_port(p), "protocol": p["protocol"]}
        if p.get("name"):
            ep["name"] = p["name"]
        ep_ports.append(ep)
    if addresses:
        subset: Obj = {"addresses": addresses}
        if ep_ports:
            subset["ports"] = ep_ports
        endpoints["subsets"] = [subset]
    snapshot = (
        tuple(f"{_host(a['ip'])}:{p['port']}" for a in addresses for p in ep_ports)
        if ep_ports
        else tuple(a["ip"] for a in addresses)
    )
    return endpoints, snapshot


def endpoints(
    spec: specs.RemoteIstio, mesh: specs.Mesh, central: Central
) -> tuple[Component, Mapping[str, tuple[str, ...]] | None]:
    """Just the `services` component (Services and Endpoints) and the snapshot."""
    return services(Ctx(spec, mesh, central, specs.remote_namespace(spec, mesh)))
