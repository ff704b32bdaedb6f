// Runtime value -> template argument, once, in one place (after flash-attention's
// static_switch.h). Each macro evaluates to the value of the lambda body it runs, so
//   BOOL_SWITCH(nhwc, kNHWC, [&] { return run<kNHWC>(); });
//   HEADDIM_SWITCH(head_dim, kHeadDim, [&] { launch<T, kHeadDim>(p); });
// instantiate the body for each case and call the one that matches.
#pragma once

#define BOOL_SWITCH(COND, CONST_NAME, ...)      \
  [&] {                                         \
    if (COND) {                                 \
      constexpr static bool CONST_NAME = true;  \
      return __VA_ARGS__();                     \
    } else {                                    \
      constexpr static bool CONST_NAME = false; \
      return __VA_ARGS__();                     \
    }                                           \
  }()

// Head-dim buckets of the attention kernels: HEADDIM (<= 256, checked by the caller) rounded up
// to 32, 64, 128 or 256; smaller head dims are zero-padded in shared memory.
#define HEADDIM_SWITCH(HEADDIM, CONST_NAME, ...) \
  [&] {                                          \
    if ((HEADDIM) <= 32) {                       \
      constexpr static int CONST_NAME = 32;      \
      return __VA_ARGS__();                      \
    } else if ((HEADDIM) <= 64) {                \
      constexpr static int CONST_NAME = 64;      \
      return __VA_ARGS__();                      \
    } else if ((HEADDIM) <= 128) {               \
      constexpr static int CONST_NAME = 128;     \
      return __VA_ARGS__();                      \
    } else {                                     \
      constexpr static int CONST_NAME = 256;     \
      return __VA_ARGS__();                      \
    }                                            \
  }()
