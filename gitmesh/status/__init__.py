"""What gitmesh saw, written down: what a pass returns (results: each remote's report and
items, the status clock), the per-remote status files made from it (reports, pure) and
the status branch they are committed to (branch: fast-import commits, race-safe pushes).
"""
