"""Soak: many passes under injected faults. Short run in the suite; long by command:

python -m tests.soak --passes 60
"""
