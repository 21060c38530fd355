"""Batched environments: the built-in navigation task, a gymnasium adapter, and a user's own factory."""
