// Every bigmodel operator schema, in one place. Backends add kernels with TORCH_LIBRARY_IMPL in
// their own files (csrc/*.cpp for CPU, csrc/cuda/*.cpp for CUDA); bigmodel/ops.py adds the fake
// (shape) functions and autograd formulas.
#include <torch/library.h>

TORCH_LIBRARY(bigmodel, m) {
  // ---- pooling ----------------------------------------------------------------------------
  // Same arguments as aten::max_pool2d; `stride=[]` means stride = kernel_size.
  m.def("max_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, "
        "int[2] dilation=1, bool ceil_mode=False) -> Tensor");
  // Also returns torch's indices (ih * W + iw within each plane), as return_indices=True does.
  m.def("max_pool2d_with_indices(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, "
        "int[2] dilation=1, bool ceil_mode=False) -> (Tensor, Tensor)");
  // Gradient w.r.t. self; recomputes each window's argmax from `self` (no indices needed).
  m.def("max_pool2d_backward(Tensor grad_output, Tensor self, int[2] kernel_size, int[2] stride, "
        "int[2] padding, int[2] dilation, bool ceil_mode) -> Tensor");
  m.def("avg_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, "
        "bool ceil_mode=False, bool count_include_pad=True, int? divisor_override=None) -> Tensor");
  m.def("avg_pool2d_backward(Tensor grad_output, Tensor self, int[2] kernel_size, int[2] stride, "
        "int[2] padding, bool ceil_mode, bool count_include_pad, int? divisor_override) -> Tensor");

  // ---- convolution ------------------------------------------------------------------------
  // torch.nn.functional.conv2d; padding is [p], [pH, pW] or [top, bottom, left, right] (the
  // asymmetric form is what padding='same' needs for even dilated kernels).
  m.def("conv2d(Tensor input, Tensor weight, Tensor? bias=None, int[2] stride=1, int[] padding=[0, 0], "
        "int[2] dilation=1, int groups=1) -> Tensor");
  // Gradient w.r.t. input; `input` supplies the shape and memory format (its values are not read).
  m.def("conv2d_backward_input(Tensor grad_output, Tensor input, Tensor weight, int[2] stride, int[] padding, "
        "int[2] dilation, int groups) -> Tensor");
  // (grad_weight, grad_bias); `weight` supplies the shape. grad_bias has shape (0,) unless bias_grad.
  m.def("conv2d_backward_weight(Tensor grad_output, Tensor input, Tensor weight, int[2] stride, int[] padding, "
        "int[2] dilation, int groups, bool bias_grad) -> (Tensor, Tensor)");
}
