"""Non-CUDA platforms run for real on an emulated device (PyTorch's PrivateUse1 renamed npu/gcu)."""
