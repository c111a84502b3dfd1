"""Custom attention kernels (Triton, with fp32 torch references and a CPU path). Empty until the kernel runner."""
