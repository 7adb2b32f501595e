"""The `vla-r1` command."""
