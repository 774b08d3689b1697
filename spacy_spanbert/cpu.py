"""What this CPU can do, as PyTorch will actually run it: native bfloat16 and int8 VNNI.

Why: bfloat16 autocast is about twice as fast as float32 on a CPU with AVX512-BF16 or AMX, and emulated, many times
slower, on one without (a pretraining step went from 2.6 s to 57 s on a 2-core AVX2 machine). fbgemm's int8 kernels
sum int8 products without saturating only with AVX512-VNNI. So every precision default ("auto") asks here, at run
time, never at import and never from a hard-coded choice.

The answers follow what PyTorch's own dispatch will use, so the settings that make a better CPU behave as a lesser
one are honoured too: `ATEN_CPU_CAPABILITY=avx2` (PyTorch's kernels), `ONEDNN_MAX_CPU_ISA=AVX2` (oneDNN, which runs
bf16 matrix products) and `FBGEMM_ENABLE_INSTRUCTIONS=AVX2` (fbgemm, which runs int8 ones). `AVX2_EMULATION` is
that set plus `MKL_ENABLE_INSTRUCTIONS=AVX2` (MKL runs float32 matrix products: without it they keep their AVX512
speed, twice AVX2's), as the tests and the benchmarks use it.
"""
import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import Dict, FrozenSet

def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


# Make a CPU with AVX512 behave as a plain AVX2 one (set before torch is imported).
AVX2_EMULATION: Dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}


def kernel_capability() -> str:
    """PyTorch's CPU kernel level in this process ("AVX2", "AVX512", "DEFAULT", ...): ATEN_CPU_CAPABILITY lowers it."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


@lru_cache(maxsize=1)
def cpu_flags() -> FrozenSet[str]:
    """The CPU's feature flags as Linux reports them (x86 `flags`, ARM `Features`); empty where there is no
    /proc/cpuinfo, which makes every probe below answer no: the safe float32 / 7-bit choices."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


# oneDNN ISA levels (ONEDNN_MAX_CPU_ISA) that include native bfloat16 dot products
_ONEDNN_BF16_LEVELS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10", "ALL")


def _onednn_allows_bf16() -> bool:
    level = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").strip().upper()
    return level.startswith(_ONEDNN_BF16_LEVELS)


def has_native_bf16() -> bool:
    """True where bfloat16 matrix products run natively: AVX512-BF16 or AMX on x86 (unless ATEN_CPU_CAPABILITY or
    ONEDNN_MAX_CPU_ISA lowers the level below them), the bf16 extension on ARM.

    Where this is False, bf16 autocast still works but is emulated and slow: "auto" means float32 there."""
    flags = cpu_flags()
    if not _is_x86():
        return "bf16" in flags
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    return native and _onednn_allows_bf16() and kernel_capability().startswith("AVX512")


def has_int8_vnni() -> bool:
    """True where fbgemm's int8 kernels use AVX512-VNNI (int8 products summed straight into int32, no saturation):
    the CPU has it and neither FBGEMM_ENABLE_INSTRUCTIONS nor ATEN_CPU_CAPABILITY lowers the level below it.
    (AVX-VNNI alone does not count: fbgemm runs its saturating AVX2 kernels there.)"""
    fbgemm = os.environ.get("FBGEMM_ENABLE_INSTRUCTIONS", "").strip().upper()
    if fbgemm and fbgemm not in ("AVX512_E1", "AVX512_VNNI"):
        return False
    return "avx512_vnni" in cpu_flags() and kernel_capability().startswith("AVX512")


def describe() -> Dict[str, object]:
    """The facts above in one dict, for benchmark machine lines and the workflow's precision plan."""
    return {
        "machine": platform.machine(),
        "kernel_capability": kernel_capability(),
        "native_bf16": has_native_bf16(),
        "int8_vnni": has_int8_vnni(),
        "emulation": {k: os.environ[k] for k in AVX2_EMULATION if k in os.environ},
    }


def precision_reason(use_bf16: bool) -> str:
    """One clause saying why a precision was chosen on this CPU (for logs and the workflow's plan)."""
    cap = kernel_capability()
    if use_bf16:
        return f"this CPU runs bfloat16 natively (AVX512-BF16/AMX, kernels {cap})"
    return f"this CPU has no native bfloat16 (kernels {cap}): bf16 would be emulated, many times slower"
