"""Where and in what precision encoders run: the device PyTorch uses, and bfloat16 matrix products
on hardware that has them natively (measured 2-3x faster there; slower elsewhere)."""

from __future__ import annotations

from fewlabel.errors import FewlabelError


def torch_module():
    """PyTorch, or a clear error naming the CPU build to install."""
    try:
        import torch
    except ImportError as err:
        raise FewlabelError(
            f"this needs PyTorch ({err}); install the CPU build: `pip install torch==2.13.0`"
        ) from None
    return torch


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (Intel AMX or AVX512-BF16): then it is 2-3x faster."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_device(name: str):
    """``auto`` is the first CUDA GPU when PyTorch sees one, else the CPU; anything else as torch reads it."""
    torch = torch_module()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise FewlabelError(f"device {name!r} is not a torch device ({err}); use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FewlabelError(f"device {name!r}: PyTorch sees no CUDA GPU here; use device=cpu or auto")
    return device


def uses_bf16(precision: str, device) -> bool:
    """bfloat16 matrix products: asked for, or (auto) on GPUs that have them and CPUs with AMX/AVX512-BF16."""
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return bool(torch_module().cuda.is_bf16_supported())
    return device.type == "cpu" and native_bf16()


def autocast(precision: str, device):
    """Mixed precision for the encoder: float32 weights and sums, bfloat16 matrix products."""
    torch = torch_module()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(precision, device))
