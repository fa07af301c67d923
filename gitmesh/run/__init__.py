"""`gitmesh run`, the long-running poller: the runner and its jobs, the endpoint and
gateway watches, the leader and shard Leases, and the metrics."""
