"""bigmodel: train, evaluate and benchmark neural networks on hand-written kernels.

    import bigmodel
    y = bigmodel.ops.max_pool2d(x, 2)          # functional ops, torch.nn.functional-compatible
    layer = bigmodel.nn.MaxPool2d(2)           # drop-in modules
    bigmodel.nn.convert(model)                 # swap a model's torch.nn layers for ours

The kernels are registered as PyTorch operators (torch.ops.bigmodel.*), so autograd,
torch.compile and the rest of PyTorch work with them.
"""

import torch  # noqa: F401  (loads libtorch and its OpenMP runtime before our extension)

from ._version import __version__

try:
    from . import _C
except ImportError as exc:  # pragma: no cover - depends on how the package was installed
    raise ImportError(
        "bigmodel's compiled extension (bigmodel._C) could not be loaded: "
        f"{exc}.\nInstall the package with `pip install --no-build-isolation .` (see README.md). "
        "If you are running Python from the source checkout, the `bigmodel/` folder there has no "
        "compiled extension and shadows the installed package: run from another directory."
    ) from exc

from ._isa import active_isa, available_isas, set_isa, use_isa

active_isa()  # fail at import, with a clear message, if BIGMODEL_ISA asks for a path that cannot run

from . import ops, reference  # noqa: E402
from . import nn  # noqa: E402


def build_info() -> dict:
    """What was built: version, torch, ISA paths, CUDA archs, and each op's backends ("cpu",
    "cuda", or "composite" for an op written in terms of other bigmodel ops) and whether it is
    CPU-only by design ("cpu_only")."""
    return _C.build_info()


__all__ = [
    "__version__",
    "active_isa",
    "available_isas",
    "build_info",
    "nn",
    "ops",
    "reference",
    "set_isa",
    "use_isa",
]
