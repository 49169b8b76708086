"""CPU and memory checks."""
