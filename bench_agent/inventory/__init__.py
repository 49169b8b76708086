"""The node's facts (CPU, memory, disks, NICs, InfiniBand, GPUs, OS), read through
the injected root."""
