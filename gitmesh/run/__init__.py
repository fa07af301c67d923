"""`gitmesh run`, the long-running poller: the runner and its jobs (runner), passes side
by side on disjoint remotes (busy), its listener over a small Protocol (http), kept remote
connections (connections), the central pod and gateway watches (endpointsync,
gatewaywatch), the leader and shard Leases (leader, shards), and the metrics.
"""
