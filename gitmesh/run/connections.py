"""The remote connections of `gitmesh run`: one per remote, kept while the remote's
kubeconfig stays the same (so endpoint updates reuse a pass's connection), each counting
its requests in the metrics and naming the replica in its User-Agent."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from gitmesh.cluster import Cluster

Observer = Callable[[str, str, int], None]


class Connections:
    """A remote's connection, by name, for as long as its kubeconfig is unchanged."""

    def __init__(self, *, observer: Observer, user_agent: str) -> None:
        self.observer = observer
        self.user_agent = user_agent
        self._lock = threading.Lock()
        self._clusters: dict[str, tuple[str, Cluster]] = {}
        self._configs: dict[str, Mapping[str, Any]] = {}

    def connect(self, name: str, config: Mapping[str, Any]) -> Cluster:
        """The connection to `name` for `config` (a new one when the config changed)."""
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
        with self._lock:
            cached = self._clusters.get(name)
            if cached is not None and cached[0] == digest:
                return cached[1]
            cluster = Cluster(name, config, observer=self.observer, user_agent=self.user_agent)
            cluster.shared = True
            self._clusters[name] = (digest, cluster)
            self._configs[name] = config
        if cached is not None:
            cached[1].close()
        return cluster

    def configs(self) -> dict[str, Mapping[str, Any]]:
        """Each remote's kubeconfig as the last pass read it."""
        with self._lock:
            return dict(self._configs)

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            clusters, self._clusters = list(self._clusters.values()), {}
        for _, cluster in clusters:
            cluster.close()
