"""matmul and the GEMM ops: bigmodel's CPU GEMM core (kernels/include/bigmodel/gemm.h).

`matmul(a, b)` is the 2-D case of torch.matmul; `gemm(a, b, c, alpha=, beta=)` is
alpha * a @ b + beta * c (torch.addmm's semantics, including "beta == 0 ignores c, NaN too").
Both accept any strides: a transposed or sliced view is read in place, never copied.
The batch-reduce and pre-packed entries are exposed for tests and benchmarks:
`gemm_batch_reduce`, `gemm_pack`, `gemm_prepacked`.
"""

from __future__ import annotations

import torch

_ops = torch.ops.bigmodel


def _check_2d(op: str, name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2:
        raise ValueError(f"{op}: {name} must be a 2-D matrix, got a {t.dim()}-D tensor of shape {tuple(t.shape)}")


def matmul(input: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """input @ other for 2-D float32/float64 CPU tensors, as torch.matmul; differentiable."""
    _check_2d("matmul", "input", input)
    _check_2d("matmul", "other", other)
    # Checked here, not left to the gemm op, so that the message names matmul's own arguments.
    for name, t in (("input", input), ("other", other)):
        if t.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"matmul: {name} must be float32 or float64, got {t.dtype}")
    if other.dtype != input.dtype:
        raise TypeError(f"matmul: other has dtype {other.dtype} but input has dtype {input.dtype}")
    if input.shape[1] != other.shape[0]:
        raise ValueError(f"matmul: input has shape {list(input.shape)} and other has shape {list(other.shape)}; "
                         "other.size(0) must equal input.size(1)")
    return _ops.gemm(input, other)


def gemm(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None, *, alpha: float = 1.0,
         beta: float = 0.0) -> torch.Tensor:
    """alpha * a @ b + beta * c, as torch.addmm(c, a, b, beta=beta, alpha=alpha); differentiable."""
    return _ops.gemm(a, b, c, alpha=float(alpha), beta=float(beta))


def gemm_batch_reduce(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None, *, alpha: float = 1.0,
                      beta: float = 0.0) -> torch.Tensor:
    """alpha * sum_t a[t] @ b[t] + beta * c for a (T, M, K) and b (T, K, N), in one register tile."""
    return _ops.gemm_batch_reduce(a, b, c, alpha=float(alpha), beta=float(beta))


def gemm_pack(x: torch.Tensor, side: str) -> torch.Tensor:
    """x packed once for the active ISA path as operand 'a' (x is M x K) or 'b' (x is K x N)."""
    return _ops.gemm_pack(x, side)


def gemm_prepacked(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None, *, alpha: float = 1.0,
                   beta: float = 0.0) -> torch.Tensor:
    """As gemm(), where a and/or b may be buffers from gemm_pack()."""
    return _ops.gemm_prepacked(a, b, c, alpha=float(alpha), beta=float(beta))


# ---- shapes for torch.compile / meta tensors ------------------------------------------------


def _check_c(c, a, m, n):
    if c is not None:
        torch._check(c.dtype == a.dtype, lambda: f"gemm: c has dtype {c.dtype} but a and b have dtype {a.dtype}")


@torch.library.register_fake("bigmodel::gemm")
def _gemm_fake(a, b, c=None, *, alpha=1.0, beta=0.0):
    torch._check(a.dim() == 2 and b.dim() == 2, lambda: "gemm: a and b must be 2-D")
    torch._check(a.shape[1] == b.shape[0], lambda: f"gemm: a has shape {tuple(a.shape)} and b has shape "
                                                   f"{tuple(b.shape)}; b.size(0) must equal a.size(1)")
    _check_c(c, a, a.shape[0], b.shape[1])
    return a.new_empty((a.shape[0], b.shape[1]))


@torch.library.register_fake("bigmodel::gemm_")
def _gemm_inplace_fake(c, a, b, *, alpha=1.0, beta=1.0):
    return None


@torch.library.register_fake("bigmodel::gemm_batch_reduce")
def _gemm_batch_reduce_fake(a, b, c=None, *, alpha=1.0, beta=0.0):
    # With a packed operand the sizes live in the buffer's contents, which a fake tensor lacks.
    torch._check(a.dim() == 3 and b.dim() == 3,
                 lambda: "gemm_batch_reduce: only 3-D operands have a shape function (not gemm_pack buffers)")
    return a.new_empty((a.shape[1], b.shape[2]))


def _packed_nbytes(x, side):
    from .. import _C

    outer, k = (x.shape[-2], x.shape[-1]) if side == "a" else (x.shape[-1], x.shape[-2])
    batch = x.shape[0] if x.dim() == 3 else 1
    return _C.gemm_packed_nbytes(str(x.dtype).replace("torch.", ""), side, int(outer), int(k) * int(batch))


@torch.library.register_fake("bigmodel::gemm_pack")
def _gemm_pack_fake(x, side):
    return x.new_empty((_packed_nbytes(x, side),), dtype=torch.uint8)


@torch.library.register_fake("bigmodel::gemm_prepacked")
def _gemm_prepacked_fake(a, b, c=None, *, alpha=1.0, beta=0.0):
    # The result's shape is stored inside packed buffers, which a fake tensor does not have.
    raise RuntimeError("gemm_prepacked has no shape function: its sizes live in the packed buffers' contents")


# ---- autograd --------------------------------------------------------------------------------
# out = alpha * a @ b + beta * c:
#   grad_a = alpha * g @ b^T,  grad_b = alpha * a^T @ g  (gemm on transposed views: no copies),
#   grad_c = beta * g, summed over the dimensions c was broadcast along.


def _gemm_setup(ctx, inputs, keyword_only_inputs, output):
    a, b, c = inputs
    ctx.save_for_backward(a, b)
    ctx.c_shape = None if c is None else tuple(c.shape)
    ctx.alpha, ctx.beta = keyword_only_inputs["alpha"], keyword_only_inputs["beta"]


def _gemm_backward(ctx, grad):
    a, b = ctx.saved_tensors
    ga = gb = gc = None
    if ctx.needs_input_grad[0]:
        ga = _ops.gemm(grad, b.t(), alpha=ctx.alpha)
    if ctx.needs_input_grad[1]:
        gb = _ops.gemm(a.t(), grad, alpha=ctx.alpha)
    if ctx.c_shape is not None and ctx.needs_input_grad[2]:
        gc = grad if ctx.beta == 1.0 else grad * ctx.beta
        shape = ctx.c_shape
        while gc.dim() > len(shape):  # c broadcast from fewer dimensions
            gc = gc.sum(0)
        for d, size in enumerate(shape):
            if size == 1 and gc.shape[d] != 1:
                gc = gc.sum(d, keepdim=True)
    return ga, gb, gc


torch.library.register_autograd("bigmodel::gemm", _gemm_backward, setup_context=_gemm_setup)
