"""Operator commands that ship with the stack (docs/deploy.md): `python -m ops.<command>`."""
