"""Workstation: whole workflows built from the other packages (the demo, the reliability harness)."""
