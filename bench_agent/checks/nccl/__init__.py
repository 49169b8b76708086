"""NCCL collectives under torchrun."""
