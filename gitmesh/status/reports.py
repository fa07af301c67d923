"""A pass's report as files on the status branch. Pure.

The report types are the plain data the reconciler hands over. `render` turns a report
plus the branch's current files into the file changes to commit: deterministic YAML
(sorted keys and lists) whose timestamps move only when a state changes, so that a pass
that changes nothing produces no change and no commit.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from gitmesh import errors, health, specs
from gitmesh.specs import yamlload

STATES = (
    "Created",
    "Reconciling",
    "Available",
    "Progressing",
    "Degraded",
    "ReconcileFailed",
    "InvalidSpec",
)
STATUS_DIR = "status"
ENDPOINTS_DIR = "endpoints"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # how the branch writes times (gitmesh.status.results)


@dataclass(frozen=True, slots=True)
class ComponentReport:
    """What one component of one remote came to in a pass."""

    name: str
    state: str  # Ready | Failed | Skipped
    objects: int = 0
    created: int = 0
    patched: int = 0
    deleted: int = 0
    error: str | None = None
    seconds: float = 0.0  # for metrics; never written to the branch
    # What works but is probably not what was meant (an enabled service nothing backs).
    warnings: tuple[str, ...] = ()

    @property
    def changed(self) -> int:
        """How many writes the component made."""
        return self.created + self.patched + self.deleted


@dataclass(frozen=True, slots=True)
class RemoteReport:
    """What one remote came to in a pass."""

    name: str
    state: str
    message: str = ""
    components: tuple[ComponentReport, ...] = ()
    # service -> "ip:port" entries; None when the pass did not observe them (keep the last).
    endpoints: Mapping[str, tuple[str, ...]] | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PassReport:
    """One reconcile pass: the source revision and each remote's outcome."""

    revision: str
    remotes: Mapping[str, RemoteReport]
    # Remotes whose spec left the repository and whose objects were pruned.
    removed: tuple[str, ...] = field(default=())
    # How many objects each removed remote's prune deleted (they count as applied).
    pruned: Mapping[str, int] = field(default_factory=dict)
    # The `gitmesh run` replica that made the pass (its identity); "" for a one-off.
    reconciled_by: str = ""
    # How long a remote may stay Progressing on the branch before it is Degraded.
    health_timeout: float = 300.0


_UNSAFE_KEY = re.compile(r"Invalid-[0-9a-f]{12}")


def status_key(name: str) -> str:
    """The name a remote's files have on the branch: its own, when it is a valid object
    name; else (a spec file named `remote-a (copy).yaml`, or with a newline) `Invalid-`
    and a digest of it, a safe path no valid remote name can equal."""
    if _valid_name(name):
        return name
    return "Invalid-" + hashlib.sha256(name.encode(errors="surrogateescape")).hexdigest()[:12]


def status_path(name: str) -> str:
    """Where a remote's status lives on the branch."""
    return f"{STATUS_DIR}/{status_key(name)}.yaml"


def endpoints_path(name: str) -> str:
    """Where a remote's endpoints snapshot lives on the branch."""
    return f"{ENDPOINTS_DIR}/{status_key(name)}.yaml"


# libyaml when PyYAML has it: a pass over 1000 remotes reads and writes 2000 files.
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def dump(data: Any) -> bytes:
    """Deterministic YAML."""
    text: str = yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=1000,
    )
    return text.encode()


def _valid_name(name: str) -> bool:
    try:
        specs.dns_subdomain(name)
    except ValueError:
        return False
    return True


def _load(data: bytes | None) -> dict[str, Any]:
    """A status file as a dict; {} for anything else (no aliases, bounded depth)."""
    if not data:
        return {}
    try:
        text = data.decode("utf-8")
        yamlload.check_events(text, file="status")
        value = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except (yaml.YAMLError, yamlload.LoadError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _endpoint_key(entry: str) -> tuple[int, int, str]:
    host, _, port = entry.rpartition(":")
    try:
        ip = int(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        ip = 0
    return (ip, int(port) if port.isdigit() else 0, entry)


# Messages reach the branch as one scrubbed line: a server's answer or an exception's text
# is never copied whole (spec problems, which people need to read in full, get more room).
ERROR_LIMIT = 300
SPEC_MESSAGE_LIMIT = 2000


def _message(remote: RemoteReport) -> str:
    limit = SPEC_MESSAGE_LIMIT if remote.state == "InvalidSpec" else ERROR_LIMIT
    return errors.one_line(remote.message, limit=limit)


def _conditions(
    remote: RemoteReport, before: list[dict[str, Any]], now: str
) -> list[dict[str, Any]]:
    """Ready and SpecValid, each with its reason and when it last changed; the words are in
    the status's one `message`."""
    old = {c.get("type"): c for c in before if isinstance(c, dict)}
    invalid = remote.state == "InvalidSpec"
    wanted = [
        ("Ready", remote.state == "Available", remote.state),
        ("SpecValid", not invalid, "InvalidSpec" if invalid else "Valid"),
    ]
    out = []
    for typ, ok, reason in wanted:
        status = "True" if ok else "False"
        prev = old.get(typ, {})
        since = prev.get("lastTransitionTime") if prev.get("status") == status else None
        out.append(
            {"type": typ, "status": status, "reason": reason, "lastTransitionTime": since or now}
        )
    return sorted(out, key=lambda c: c["type"])


def _overdue(remote: RemoteReport, before: dict[str, Any], now: str, timeout: float) -> bool:
    """Whether a Progressing remote has been so (or Degraded) for longer than `timeout`."""
    if remote.state != health.PROGRESSING:
        return False
    if before.get("state") == health.DEGRADED:
        return True
    if before.get("state") != health.PROGRESSING or not isinstance(before.get("since"), str):
        return False
    try:
        since = datetime.datetime.strptime(before["since"], TIME_FORMAT)
        at = datetime.datetime.strptime(now, TIME_FORMAT)
    except ValueError:
        return False
    return (at - since).total_seconds() >= timeout


def _degraded(remote: RemoteReport, timeout: float) -> RemoteReport:
    text = f"Progressing for longer than the health timeout ({timeout:g}s): {remote.message}"
    return dataclasses.replace(remote, state=health.DEGRADED, message=text)


def _warnings(remote: RemoteReport, components: Mapping[str, Any]) -> list[str]:
    """This pass's warnings only: a remote that was not attempted (InvalidSpec) keeps its
    components' history, not the warnings of its last good pass."""
    if not remote.components:
        return []
    return [w for c in components.values() if isinstance(c, dict) for w in c.get("warnings") or ()]


def _status(
    remote: RemoteReport,
    revision: str,
    before: dict[str, Any],
    now: str,
    *,
    by: str = "",
    timeout: float = 300.0,
) -> dict[str, Any]:
    if _overdue(remote, before, now, timeout):
        remote = _degraded(remote, timeout)
    components: dict[str, Any] = {}
    old_components = before.get("components") or {}
    for comp in remote.components:
        entry: dict[str, Any] = {"state": comp.state, "objects": comp.objects}
        if comp.error:
            entry["error"] = errors.one_line(comp.error, limit=ERROR_LIMIT)
        if comp.warnings:
            entry["warnings"] = [errors.one_line(w, limit=ERROR_LIMIT) for w in comp.warnings]
        if comp.changed:
            entry["lastChange"] = {
                "revision": revision,
                "time": now,
                "created": comp.created,
                "patched": comp.patched,
                "deleted": comp.deleted,
            }
        elif (
            isinstance(old_components.get(comp.name), dict)
            and "lastChange" in old_components[comp.name]
        ):
            entry["lastChange"] = old_components[comp.name]["lastChange"]
        components[comp.name] = entry
    if not remote.components:
        components = old_components  # nothing was attempted; keep what was last seen
    elif "stray" in old_components and "stray" not in components:
        components["stray"] = old_components["stray"]  # the last cleanup, as history
    # The last revision this remote was Available at (Flux's lastAppliedRevision), and the
    # one this pass tried; older files said sourceRevision.
    applied = (
        revision
        if remote.state == "Available"
        else before.get("lastAppliedRevision")
        or (before.get("sourceRevision") if before.get("state") == "Available" else None)
    )
    status: dict[str, Any] = {
        "name": remote.name,
        "state": remote.state,
        "since": before.get("since")
        if before.get("state") == remote.state and before.get("since")
        else now,
        "lastAttemptedRevision": revision,
        "conditions": _conditions(remote, before.get("conditions") or [], now),
        "components": components,
    }
    if applied:
        status["lastAppliedRevision"] = applied
    if by:
        status["reconciledBy"] = by
    if remote.message:
        status["message"] = _message(remote)
    warnings = _warnings(remote, components)
    if warnings:
        status["warnings"] = warnings
    return status


def _only_by_differs(status: dict[str, Any], before: dict[str, Any]) -> bool:
    def rest(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k != "reconciledBy"}

    return bool(before) and rest(status) == rest(before)


def render(report: PassReport, current: Mapping[str, bytes], now: str) -> dict[str, bytes | None]:
    """The files to write (bytes) or delete (None) for this report, given the branch's
    current files. Unchanged files are left out."""
    out: dict[str, bytes | None] = {}
    for name, remote in sorted(report.remotes.items()):
        path = status_path(name)
        before = _load(current.get(path))
        status = _status(
            remote,
            report.revision,
            before,
            now,
            by=report.reconciled_by,
            timeout=report.health_timeout,
        )
        if status_key(name) != name:
            status = {"specFile": f"remotes/{name}.yaml", **status}
        data = dump(status)
        # Who made the pass is not news: a restarted `gitmesh run` does not commit for it.
        if current.get(path) != data and not _only_by_differs(status, before):
            out[path] = data
        if remote.endpoints is not None:
            out.update(render_endpoints({name: remote.endpoints}, current))
    for name in report.removed:
        for path in (status_path(name), endpoints_path(name)):
            if path in current:
                out[path] = None
    return out


def render_endpoints(
    snapshots: Mapping[str, Mapping[str, tuple[str, ...]]], current: Mapping[str, bytes]
) -> dict[str, bytes | None]:
    """Just the endpoints files of some remotes (after a live endpoint update)."""
    out: dict[str, bytes | None] = {}
    for name, endpoints in sorted(snapshots.items()):
        eps = {svc: sorted(set(v), key=_endpoint_key) for svc, v in sorted(endpoints.items())}
        data = dump({"remote": name, "services": eps})
        if current.get(endpoints_path(name)) != data:
            out[endpoints_path(name)] = data
    return out


def message(report: PassReport, changes: Mapping[str, bytes | None]) -> str:
    """The commit message: source revision, states, and what was applied."""
    states: dict[str, int] = {}
    for remote in report.remotes.values():
        states[remote.state] = states.get(remote.state, 0) + 1
    counts = [
        sum(getattr(c, f) for r in report.remotes.values() for c in r.components)
        for f in ("created", "patched", "deleted")
    ]
    counts[2] += sum(report.pruned.values())
    summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no remotes"
    lines = [
        f"gitmesh status at {report.revision[:12]}: {summary}",
        "",
        f"Source revision: {report.revision}",
        f"Applied: {counts[0]} created, {counts[1]} patched, {counts[2]} deleted",
    ]
    names = {status_key(n): n for n in [*report.remotes, *report.removed]}
    touched = sorted({p.split("/", 1)[1].rsplit(".", 1)[0] for p in changes})
    for key in touched:
        name = names.get(key, key)
        found = report.remotes.get(name)
        shown = name if name == key else f"{key} (the file remotes/{name!r}.yaml)"
        if found is None:
            lines.append(f"- {shown}: removed ({report.pruned.get(name, 0)} deleted)")
            continue
        applied = [
            f"{c.name} +{c.created} ~{c.patched} -{c.deleted}"
            for c in found.components
            if c.changed
        ]
        detail = f" ({'; '.join(applied)})" if applied else ""
        lines.append(f"- {shown}: {found.state}{detail}")
    return "\n".join(lines) + "\n"


def read_status(files: Mapping[str, bytes]) -> list[dict[str, Any]]:
    """Each remote's status and endpoint count, from the branch's files (for `gitmesh
    status`)."""
    rows = []
    for path in sorted(files):
        if not (path.startswith(STATUS_DIR + "/") and path.endswith(".yaml")):
            continue
        # The branch is written by gitmesh, but anyone with push access can forge it: the
        # name comes from the path and must be a valid object name, like a spec's.
        name = path[len(STATUS_DIR) + 1 : -5]
        if not (_valid_name(name) or _UNSAFE_KEY.fullmatch(name)):
            continue
        status = _load(files[path])
        eps = _load(files.get(endpoints_path(name))).get("services") or {}
        rows.append(
            {
                "remote": name,
                "state": status.get("state", "Unknown"),
                "since": status.get("since", ""),
                "lastAppliedRevision": status.get("lastAppliedRevision", ""),
                "lastAttemptedRevision": status.get("lastAttemptedRevision")
                or status.get("sourceRevision", ""),
                "endpoints": sum(len(v or []) for v in eps.values()),
                "reconciledBy": str(status.get("reconciledBy") or ""),
                "message": status.get("message", ""),
                "warnings": [str(w) for w in status.get("warnings") or ()],
                "conditions": [
                    {
                        k: str(c.get(k, ""))
                        for k in ("type", "status", "reason", "lastTransitionTime")
                    }
                    for c in status.get("conditions") or ()
                    if isinstance(c, dict)
                ],
            }
        )
    return rows
