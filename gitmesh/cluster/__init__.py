"""The Kubernetes gateway: the only package that imports `kubernetes` (`client`: a
`Cluster` speaking plain dicts, errors translated at this boundary), over a transport
that bounds every exchange in time and size (`transport`)."""

from gitmesh.cluster.client import MAX_RESPONSE, USER_AGENT, Cluster

__all__ = ["MAX_RESPONSE", "USER_AGENT", "Cluster"]
