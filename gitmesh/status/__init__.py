"""What gitmesh saw, written down: the per-remote status reports (reports) and the
status branch they are committed to (branch)."""
