"""GPU capacity and health (NVML), and GPU assignment to containers."""
