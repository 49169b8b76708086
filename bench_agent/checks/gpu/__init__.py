"""GPU checks and their torch kernels."""
