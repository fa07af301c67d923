"""Credentials: a remote's kubeconfig and the token `gitmesh join` mints (join), and the
intermediate CA each RemoteIstio's citadel signs with (ca)."""
