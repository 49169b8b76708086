"""The node's PCI topology against its node type's expected one (checks.py)."""
