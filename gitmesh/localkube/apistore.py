"""The emulator's `Store` methods spoken to a real kube-apiserver over HTTPS: what lets
`gitmesh.testing.sandbox` and the tests seed and read either backend alike. Errors come back as the
emulator's `ApiError`, so callers handle both the same way."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from gitmesh.localkube.store import ApiError


@dataclass(frozen=True, slots=True)
class Kind:
    """A resource of the real server, as the emulator's `Kind` names it."""

    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool

    @property
    def key(self) -> tuple[str, str]:
        """Same role as the emulator's Kind.key."""
        return (self.group, self.resource)

    def path(self, namespace: str = "", name: str = "", subresource: str = "") -> str:
        """The REST path."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.resource}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


class ApiStore:
    """The emulator's `Store` methods, spoken to a real kube-apiserver over HTTPS."""

    def __init__(self, url: str, token: str, ca_pem: bytes) -> None:
        self.url = url
        self.token = token
        self.context = ssl.create_default_context(cadata=ca_pem.decode())
        self._kinds: dict[tuple[str, str, str], Kind] = {}

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
        raw: bool = False,
    ) -> Any:
        """One request; a Status answer raises the emulator's ApiError."""
        url = self.url + path + (("?" + urllib.parse.urlencode(query)) if query else "")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - https only
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.context, timeout=30) as resp:  # noqa: S310
                data_in = resp.read()
        except urllib.error.HTTPError as e:
            try:
                status = json.loads(e.read())
            except ValueError:
                status = {}
            raise ApiError(
                e.code,
                str(status.get("reason", "")),
                str(status.get("message", e.reason)),
                status.get("details"),
            ) from None
        if raw:
            return data_in
        return json.loads(data_in) if data_in else None

    def kind(self, group: str, version: str, resource: str) -> Any:
        """The resource, from discovery (cached)."""
        key = (group, version, resource)
        if key not in self._kinds:
            path = f"/apis/{group}/{version}" if group else f"/api/{version}"
            for r in self.request("GET", path)["resources"]:
                if "/" not in r["name"]:
                    self._kinds[(group, version, r["name"])] = Kind(
                        group, version, r["name"], r["kind"], r["namespaced"]
                    )
        return self._kinds[key]

    def get(self, kind: Any, namespace: str, name: str) -> dict[str, Any]:
        """GET one object."""
        obj: dict[str, Any] = self.request("GET", kind.path(namespace, name))
        return obj

    def list(
        self, kind: Any, namespace: str = "", *, label_selector: str = "", **_: Any
    ) -> dict[str, Any]:
        """LIST, as {"items": [...]} (each item with apiVersion and kind filled in)."""
        query = {"labelSelector": label_selector} if label_selector else None
        out: dict[str, Any] = self.request("GET", kind.path(namespace), query=query)
        api_version = f"{kind.group}/{kind.version}" if kind.group else kind.version
        for item in out.get("items") or []:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind.kind)
        return out

    def create(self, kind: Any, namespace: str, body: Any, *, dry_run: bool = False) -> Any:
        """POST."""
        return self.request(
            "POST", kind.path(namespace), body, query={"dryRun": "All"} if dry_run else None
        )

    def update(
        self, kind: Any, namespace: str, name: str, body: Any, *, subresource: str = "", **_: Any
    ) -> Any:
        """PUT (the object, or a subresource)."""
        return self.request("PUT", kind.path(namespace, name, subresource), body)

    def patch(
        self,
        kind: Any,
        namespace: str,
        name: str,
        content_type: str,
        body: Any,
        *,
        subresource: str = "",
        **_: Any,
    ) -> Any:
        """PATCH with the given content type."""
        return self.request(
            "PATCH", kind.path(namespace, name, subresource), body, content_type=content_type
        )

    def delete(self, kind: Any, namespace: str, name: str, **_: Any) -> Any:
        """DELETE."""
        return self.request("DELETE", kind.path(namespace, name))
