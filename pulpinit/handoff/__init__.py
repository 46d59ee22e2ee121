"""Stage 5, hand-off: drop privileges and exec the role's process (or the resident supervisor)."""
