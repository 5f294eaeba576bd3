"""Benchmarks: our int8 and fp32 engine vs fastembed (same fp32 export) vs HF transformers PyTorch."""
