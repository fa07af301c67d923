"""Credentials: a remote's kubeconfig in a pass, central refused, the connection bounded
(remote); what `gitmesh join` grants on a remote (grants) and how it mints and renews the
token (join); and the intermediate CA each RemoteIstio's citadel signs with (ca)."""
