"""Which ONNX Runtime execution providers a session uses.

`onnxruntime-gpu` (the `[gpu]` extra) brings the CUDA provider; the plain `onnxruntime` wheel has
only the CPU one. `auto` takes CUDA when the installed wheel has it, so the same code runs on
both kinds of machine; asking for `cuda` where it is missing is a one-line error, not a silent
fall-back to the CPU.
"""

import onnxruntime as ort

from sgm_export.errors import SgmError

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def execution_providers(device: str = "auto") -> list[str]:
    """Providers for `device` (auto, cpu or cuda), best first."""
    available = ort.get_available_providers()
    if device == "cpu":
        return [CPU]
    if device in ("auto", "cuda") and CUDA in available:
        return [CUDA, CPU]
    if device == "cuda":
        raise SgmError(
            "device cuda was asked for but this onnxruntime has no CUDA execution provider",
            "install onnxruntime-gpu (pip install 'sgm-export[gpu]' after removing onnxruntime), or use device cpu",
        )
    if device == "auto":
        return [CPU]
    raise SgmError(f"unknown device {device!r}", "use auto, cpu or cuda")
