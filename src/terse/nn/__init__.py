"""Shared torch building blocks (no system logic)."""
