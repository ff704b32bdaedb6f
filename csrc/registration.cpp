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

  // ---- LSTM -------------------------------------------------------------------------------
  // One layer, one direction, over (T, B, input_size); gate order i, f, g, o as torch.nn.LSTM.
  // gates / cells are the saved activations the backward reads (float32 for 16-bit inputs).
  // lengths (int64, CPU, non-increasing, not with reverse): row b runs lengths[b] steps only.
  m.def("lstm(Tensor input, Tensor hx, Tensor cx, Tensor w_ih, Tensor w_hh, Tensor? b_ih=None, "
        "Tensor? b_hh=None, bool reverse=False, Tensor? lengths=None) -> "
        "(Tensor output, Tensor h_n, Tensor c_n, Tensor gates, Tensor cells)");
  // grad_bias is the gradient of b_ih, which equals that of b_hh. Missing gradients are zeros.
  m.def("lstm_backward(Tensor? grad_output, Tensor? grad_h_n, Tensor? grad_c_n, Tensor input, Tensor hx, "
        "Tensor cx, Tensor w_ih, Tensor w_hh, Tensor output, Tensor gates, Tensor cells, bool reverse=False, "
        "Tensor? lengths=None) -> (Tensor grad_input, Tensor grad_hx, Tensor grad_cx, Tensor grad_w_ih, "
        "Tensor grad_w_hh, Tensor grad_bias)");
  // One step of torch.nn.LSTMCell, batched (B, input_size) or unbatched (input_size,).
  m.def("lstm_cell(Tensor input, Tensor hx, Tensor cx, Tensor w_ih, Tensor w_hh, Tensor? b_ih=None, "
        "Tensor? b_hh=None) -> (Tensor h, Tensor c, Tensor gates)");
}
