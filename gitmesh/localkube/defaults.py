"""Server-side defaulting and validation for the built-in kinds, as far as clients notice.

kube-apiserver fills in fields on create and update (a Service's clusterIP and port
protocol, a Deployment's strategy, a container's terminationMessagePath, ...). Clients
that diff what they sent with what they read back must cope with that; localkube fills in
the same fields so that they have to. Validation covers names and the handful of rules
our clients can trip over; it is not kube's full validation (see the package docstring).
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import re
from typing import Any

from gitmesh import quantity
from gitmesh.localkube.kinds import Kind

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def name_problem(kind: Kind, name: str) -> str | None:
    """Why `name` is not a valid name for `kind`, or None."""
    if kind.name_rule == "label":
        if len(name) > 63 or not _LABEL.match(name):
            return (
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                "or '-', and must start and end with an alphanumeric character (e.g. 'my-name',"
                "  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            )
        return None
    if kind.name_rule == "path":
        if name in (".", "..") or "/" in name or "%" in name:
            return "may not contain '/' or '%', and may not be '.' or '..'"
        return None
    if len(name) > 253 or not _SUBDOMAIN.match(name):
        return (
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters,"
            " '-' or '.', and must start and end with an alphanumeric character (e.g. "
            "'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    return None


def _container(c: dict[str, Any]) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    image = str(c.get("image", ""))
    tag = image.rsplit("/", 1)[-1]
    latest = ":" not in tag or tag.endswith(":latest")
    c.setdefault("imagePullPolicy", "Always" if latest and "@" not in tag else "IfNotPresent")
    resources = c.setdefault("resources", {})
    for field in ("limits", "requests"):
        # Quantities are stored (and answered) in canonical form: 0.5 becomes 500m.
        for name, value in list((resources.get(field) or {}).items()):
            with contextlib.suppress(quantity.QuantityError):
                resources[field][name] = quantity.canonical(value)
    for port in c.get("ports", []) or []:
        port.setdefault("protocol", "TCP")


def _pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    if "serviceAccountName" in spec:
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
    for c in [*spec.get("containers", []), *spec.get("initContainers", [])]:
        _container(c)


def apply(kind: Kind, obj: dict[str, Any], *, allocate_ip: Any) -> None:
    """Fill in the server-defaulted fields of a built-in object, in place."""
    k = kind.kind
    spec = obj.get("spec")
    if k == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"][
            "name"
        ]
    elif k == "Service" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["type"] != "ExternalName":
            if not spec.get("clusterIP"):
                spec["clusterIP"] = allocate_ip()
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        for port in spec.get("ports", []) or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
    elif k == "Endpoints":
        for subset in obj.get("subsets", []) or []:
            for port in subset.get("ports", []) or []:
                port.setdefault("protocol", "TCP")
    elif k == "EndpointSlice":
        for port in obj.get("ports", []) or []:
            port.setdefault("protocol", "TCP")
    elif k == "Secret":
        if not obj.get("type"):  # kube defaults an empty type too
            obj["type"] = "Opaque"
        # stringData is write-only: folded into data (base64), winning over data's keys.
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict) and string_data:
            data: dict[str, Any] = obj["data"] if isinstance(obj.get("data"), dict) else {}
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            obj["data"] = data
    elif k == "Deployment" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            strategy.setdefault("type", "RollingUpdate")
            strategy.setdefault("rollingUpdate", {"maxUnavailable": "25%", "maxSurge": "25%"})
        _pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))
    elif k == "Pod" and isinstance(spec, dict):
        _pod_spec(spec)
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
    elif k in ("Job", "CronJob") and isinstance(spec, dict):
        template = spec.get("jobTemplate", {}).get("spec", {}) if k == "CronJob" else spec
        if k == "CronJob":
            spec.setdefault("concurrencyPolicy", "Allow")
            spec.setdefault("suspend", False)
            spec.setdefault("successfulJobsHistoryLimit", 3)
            spec.setdefault("failedJobsHistoryLimit", 1)
        _pod_spec(template.setdefault("template", {}).setdefault("spec", {}))
    elif k == "MutatingWebhookConfiguration":
        for hook in obj.get("webhooks", []) or []:
            hook.setdefault("failurePolicy", "Fail")
            hook.setdefault("matchPolicy", "Equivalent")
            hook.setdefault("namespaceSelector", {})
            hook.setdefault("objectSelector", {})
            hook.setdefault("reinvocationPolicy", "Never")
            hook.setdefault("timeoutSeconds", 10)
            svc = hook.get("clientConfig", {}).get("service")
            if isinstance(svc, dict):
                svc.setdefault("port", 443)


def _slice_problems(obj: dict[str, Any]) -> list[str]:
    family = obj.get("addressType")
    if family not in ("IPv4", "IPv6", "FQDN"):
        return [
            f'addressType: Unsupported value: "{family}": supported values: "FQDN", "IPv4", "IPv6"'
        ]
    out = []
    for i, endpoint in enumerate(obj.get("endpoints") or []):
        addresses = endpoint.get("addresses") or []
        if not addresses:
            out.append(f"endpoints[{i}].addresses: Required value")
        for j, address in enumerate(addresses):
            version: int
            try:
                version = ipaddress.ip_address(address).version
            except ValueError:
                version = 0
            if family != "FQDN" and version != (4 if family == "IPv4" else 6):
                out.append(
                    f'endpoints[{i}].addresses[{j}]: Invalid value: "{address}": must be a '
                    f"valid {family} address"
                )
    return out


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _dns_subdomain(name: object) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= 253
        and all(len(p) <= 63 and _DNS_LABEL.fullmatch(p) for p in name.split("."))
    )


def problems(kind: Kind, obj: dict[str, Any]) -> list[str]:
    """Field errors kube-apiserver would report for this object (a subset)."""
    out = []
    spec: dict[str, Any] = obj["spec"] if isinstance(obj.get("spec"), dict) else {}
    if kind.kind == "Service":
        ip = spec.get("clusterIP")
        if ip and ip != "None":
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                out.append(f'spec.clusterIP: Invalid value: "{ip}": must be a valid IP address')
        for i, port in enumerate(spec.get("ports", []) or []):
            p = port.get("port")
            if not isinstance(p, int) or not 1 <= p <= 65535:
                out.append(
                    f"spec.ports[{i}].port: Invalid value: {p!r}: must be between 1 and "
                    "65535, inclusive"
                )
        name = spec.get("externalName")
        if spec.get("type") == "ExternalName" and not _dns_subdomain(name):
            out.append(
                f'spec.externalName: Invalid value: "{name}": a lowercase RFC 1123 subdomain '
                "must consist of lower case alphanumeric characters, '-' or '.'"
            )
    if kind.kind in ("Deployment",):
        if not spec.get("selector"):
            out.append("spec.selector: Required value")
        if not (spec.get("template", {}).get("spec", {}).get("containers")):
            out.append("spec.template.spec.containers: Required value")
    if kind.kind == "Pod" and not spec.get("containers"):
        out.append("spec.containers: Required value")
    if kind.kind == "EndpointSlice":
        out += _slice_problems(obj)
    owners = obj.get("metadata", {}).get("ownerReferences") or []
    for i, ref in enumerate(owners if isinstance(owners, list) else []):
        for field in ("apiVersion", "kind", "name", "uid"):
            if not isinstance(ref, dict) or not ref.get(field):
                out.append(f'metadata.ownerReferences[{i}].{field}: Invalid value: "": empty')
    labels = obj.get("metadata", {}).get("labels") or {}
    for value in labels.values():
        if not isinstance(value, str) or len(value) > 63:
            out.append(
                f'metadata.labels: Invalid value: "{value}": must be no more than 63 characters'
            )
    return out
