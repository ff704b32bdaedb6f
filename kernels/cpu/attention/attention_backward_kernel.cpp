// Fused softmax attention on the CPU, backward (FlashAttention-2's order). Compiled once per ISA
// path (see kernels/cpu/simd.h); kernels/cpu/attention/attention.cpp dispatches. The panel
// layout of the score blocks: attention_common.h.
//
// Once per call: D = rowsum(dO * O) for every query row. Then per (batch, kv head, chunk of key
// blocks), with K_j, V_j and K_j^T packed as GEMM A operands per key block and Q_i and dO_i as
// B operands per query block (qb queries) into the thread's own buffers at the item's start,
// over the query heads of the group and the query blocks that can see the key block, with the
// scores kept key-major (element (s, q) at s * qbp + q: a vector holds Vec::size queries of one
// key, so the element-wise work needs no transposes):
//
//   S^T  = scale * K_j Q_i^T,  dP^T = V_j dO_i^T         GEMMs, both operands pre-packed
//   P^T  = exp(S^T + mask - logsumexp), Z = dropout multipliers
//   dS^T = P^T * (Z dP^T - D)
//   dV_j += (P Z)^T dO_i,  dK_j += scale * dS^T Q_i      GEMMs over all qb queries at once
//   dQ_i^T += scale * K_j^T dS^T                         GEMM, K_j^T pre-packed
//
// P is recomputed from logsumexp and never stored beyond one block. Work items own their dK / dV
// rows; dQ^T is accumulated per item and written (transposed) at its end, into dQ itself when
// there is one chunk per (batch, kv head), else into the chunk's partial, summed after a barrier
// (heads too few to share among the threads; extra memory O(chunks * L * E)).
#include <omp.h>

#include "cpu/attention/attention_common.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

// dot(x[0, n), y[0, n)) accumulated in double: D is subtracted from dP, and the two nearly
// cancel for rows whose attention sits on one key; O(L * Ev) work in all.
template <typename T>
BM_INLINE T dot_f64(const T* x, const T* y, int64_t n) {
  double acc = 0.0;
  for (int64_t j = 0; j < n; ++j) acc += static_cast<double>(x[j]) * static_cast<double>(y[j]);
  return static_cast<T>(acc);
}

template <typename T>
void backward_impl(const AttentionParams& p) {
  using V = Vec<T>;
  constexpr int VS = V::size;
  const Inputs<T> in(p);
  const GemmBlocking gb = gemm_blocking(dtype_of<T>());
  const int nr = gb.NR;  // every GEMM table has NR a multiple of the vector width
  const int64_t L = p.L, S = p.S, E = p.E, Ev = p.Ev, Hq = p.Hq, Hkv = p.Hkv, group = in.group;
  // Block sizes (measured: fwd+bwd of (2, 8, 2048, 64) and (8, 8, 512, 64)): 64 queries x ~126
  // keys; smaller key blocks waste less on the causal diagonal, at no cost elsewhere.
  const int64_t qb = round_up(min64(max64(L, 1), 64), nr), kb = gb.MR * max64(1, 126 / gb.MR);
  const int64_t qbp = qb;  // row stride of the key-major score blocks (a multiple of NR)
  const int nvq = static_cast<int>(qbp / VS);
  const int64_t nq = (L + qb - 1) / qb, nkv = (S + kb - 1) / kb, bhkv = p.B * Hkv;
  if (p.B * Hq == 0) return;
  const T* go = static_cast<const T*>(p.grad_output);
  const T* out = static_cast<const T*>(p.output);
  const T* lse_all = static_cast<const T*>(p.logsumexp);
  T* dq = static_cast<T*>(p.grad_query);
  T* dk = static_cast<T*>(p.grad_key);
  T* dv = static_cast<T*>(p.grad_value);
  const T scale = static_cast<T>(p.scale);

  int nt = threads_for(p, 8.0 * p.B * Hq * L * S * static_cast<double>(max64(E, Ev)), p.B * Hq * max64(L, S));
  // One chunk per (batch, kv head) when those share out evenly; else deal key blocks to chunks.
  int64_t chunks = 1;
  if (nt > 1 && bhkv % nt != 0 && bhkv < 4 * nt && nkv > 1) chunks = min64(nkv, nt);
  const int64_t items = bhkv * chunks;
  if (items < nt) nt = static_cast<int>(items < 1 ? 1 : items);

  // Shared: D and the dQ partials. Per thread: the packed operands of its item's kv head (K_j,
  // V_j, K_j^T for its key blocks; Q_i, dO_i for the query blocks of the group's heads), packed
  // at the item's start: O(threads * (S + group * L) * E), so the allocator reuses the memory
  // across calls (a whole-call copy was paged in afresh by every call).
  const int64_t q_rows = p.B * Hq * L, gq = group * nq;
  const int64_t ka_bytes = align64(packed_bytes<T>(GemmSide::a, kb, E));
  const int64_t va_bytes = align64(packed_bytes<T>(GemmSide::a, kb, Ev));
  const int64_t kt_bytes = align64(packed_bytes<T>(GemmSide::a, E, kb));
  const int64_t qb_bytes = align64(packed_bytes<T>(GemmSide::b, qb, E));
  const int64_t gb_bytes = align64(packed_bytes<T>(GemmSide::b, qb, Ev));
  const int64_t kv_stride = ka_bytes + va_bytes + kt_bytes, q_stride = qb_bytes + gb_bytes;
  const int64_t d_bytes = align64(q_rows * sizeof(T));
  const int64_t part_bytes = chunks > 1 ? align64(chunks * q_rows * E * sizeof(T)) : 0;
  // Per thread: the two panels (S^T then P^T; dP^T then dS^T), P Z when dropping out, dQ^T of
  // the item's query heads, per-lane limits / logsumexp / D / keys, GEMM scratch (for the two
  // GEMMs with strided operands, sized with real strides and dummy data).
  T dummy[1];
  const GemmPacked ka_s = shape_only<T>(GemmSide::a, kb, E, gb.MR, dummy), va_s = shape_only<T>(GemmSide::a, kb, Ev, gb.MR, dummy);
  const GemmPacked kt_s = shape_only<T>(GemmSide::a, E, kb, gb.MR, dummy), q_s = shape_only<T>(GemmSide::b, qb, E, nr, dummy);
  const GemmPacked g_s = shape_only<T>(GemmSide::b, qb, Ev, nr, dummy);
  const int64_t g_bytes = align64(max64(
      max64(gemm_scratch_bytes(gemm_params<T>(kb, Ev, qb, strided(dummy, qbp, 1), strided(dummy, p.go_sl, 1), dummy,
                                              Ev, T(1), T(1))),
            gemm_scratch_bytes(gemm_params<T>(kb, E, qb, strided(dummy, qbp, 1), strided(dummy, p.q_sl, 1), dummy, E,
                                              T(1), T(1)))),
      max64(max64(gemm_scratch_bytes(gemm_params<T>(kb, qb, E, packed(&ka_s), packed(&q_s), dummy, qbp, T(1), T(0))),
                  gemm_scratch_bytes(gemm_params<T>(kb, qb, Ev, packed(&va_s), packed(&g_s), dummy, qbp, T(1), T(0)))),
            gemm_scratch_bytes(gemm_params<T>(E, qb, kb, packed(&kt_s), strided(dummy, qbp, 1), dummy, qbp, T(1),
                                              T(1))))));
  const int64_t panel_bytes = align64(kb * qbp * sizeof(T));
  const int64_t s_off = 0, dp_off = panel_bytes, pd_off = 2 * panel_bytes;
  const int64_t dqt_off = pd_off + (in.dropout ? panel_bytes : 0);
  const int64_t lane_off = dqt_off + align64(group * nq * E * qbp * sizeof(T));
  const int64_t g_off = lane_off + align64(qbp * (sizeof(int64_t) + 3 * sizeof(T) + sizeof(uint32_t)));
  const int64_t kvp_off = g_off + g_bytes, qp_off = kvp_off + nkv * kv_stride;
  const int64_t per_thread = qp_off + gq * q_stride;
  const AlignedBuffer arena(d_bytes + part_bytes + per_thread * nt);
  T* dvec = reinterpret_cast<T*>(arena.data());
  T* partial = reinterpret_cast<T*>(arena.data() + d_bytes);
  char* thread_base = arena.data() + d_bytes + part_bytes;
  const int64_t descs = 3 * nkv + 2 * gq;  // per thread: ka, va, kt per key block; qbd, gbd per query block
  GemmPacked* desc_all = new GemmPacked[descs * nt > 0 ? descs * nt : 1];

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
#pragma omp for schedule(static)
    for (int64_t r = 0; r < q_rows; ++r) {
      const int64_t bh = r / L, row = r - bh * L, b = bh / Hq, h = bh - b * Hq;
      dvec[r] = dot_f64(go + b * p.go_sb + h * p.go_sh + row * p.go_sl, out + r * Ev, Ev);
    }
    char* mine = thread_base + per_thread * omp_get_thread_num();
    GemmPacked* ka = desc_all + descs * omp_get_thread_num();
    GemmPacked* va = ka + nkv;
    GemmPacked* kt = va + nkv;
    GemmPacked* qbd = kt + nkv;
    GemmPacked* gbd = qbd + gq;
    T* sbuf = reinterpret_cast<T*>(mine + s_off);
    T* dpbuf = reinterpret_cast<T*>(mine + dp_off);
    T* pdbuf = in.dropout ? reinterpret_cast<T*>(mine + pd_off) : sbuf;
    T* dqt = reinterpret_cast<T*>(mine + dqt_off);
    int64_t* limit = reinterpret_cast<int64_t*>(mine + lane_off);
    T* limf = reinterpret_cast<T*>(limit + qbp);
    T* lse_l = limf + qbp;
    T* d_l = lse_l + qbp;
    uint32_t* keys = reinterpret_cast<uint32_t*>(d_l + qbp);
    const Scratch gs{mine + g_off, g_bytes};
    const V zero = V::zero();

#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t bkv = item / chunks, c = item - bkv * chunks, b = bkv / Hkv, hk = bkv - b * Hkv;
      T* dk_head = dk + bkv * S * E;
      T* dv_head = dv + bkv * S * Ev;
      fill(dqt, group * nq * E * qbp, T(0));
      for (int64_t jb = c; jb < nkv; jb += chunks) {
        const int64_t j0 = jb * kb, cols = min64(kb, S - j0);
        fill(dk_head + j0 * E, cols * E, T(0));
        fill(dv_head + j0 * Ev, cols * Ev, T(0));
        const T* kj = in.k_head(p, b, hk) + j0 * p.k_sl;
        char* dst = mine + kvp_off + jb * kv_stride;
        ka[jb] = pack<T>(GemmSide::a, cols, E, kj, p.k_sl, 1, dst);
        va[jb] = pack<T>(GemmSide::a, cols, Ev, in.v_head(p, b, hk) + j0 * p.v_sl, p.v_sl, 1, dst + ka_bytes);
        kt[jb] = pack<T>(GemmSide::a, E, cols, kj, 1, p.k_sl, dst + ka_bytes + va_bytes);
      }
      // Q_i and dO_i of the group's heads, for the query blocks this chunk's key blocks reach
      for (int64_t hl = 0; hl < group; ++hl) {
        const int64_t h = hk * group + hl;
        for (int64_t iq = p.causal ? c * kb / qb : 0; iq < nq; ++iq) {
          const int64_t i0 = iq * qb, rows = min64(qb, L - i0);
          char* dst = mine + qp_off + (hl * nq + iq) * q_stride;
          qbd[hl * nq + iq] = pack<T>(GemmSide::b, rows, E, in.q_head(p, b, h) + i0 * p.q_sl, p.q_sl, 1, dst);
          gbd[hl * nq + iq] = pack<T>(GemmSide::b, rows, Ev, go + b * p.go_sb + h * p.go_sh + i0 * p.go_sl, p.go_sl,
                                      1, dst + qb_bytes);
        }
      }
      for (int64_t jb = c; jb < nkv; jb += chunks) {
        const int64_t j0 = jb * kb, cols = min64(kb, S - j0);
        T* dkj = dk_head + j0 * E;
        T* dvj = dv_head + j0 * Ev;
        for (int64_t hl = 0; hl < group; ++hl) {
          const int64_t h = hk * group + hl, bh = b * Hq + h;
          const void* km = key_mask<T>(p, b, h, j0);
          for (int64_t iq = p.causal ? j0 / qb : 0; iq < nq; ++iq) {  // causal: earlier queries see none
            const int64_t i0 = iq * qb, rows = min64(qb, L - i0);
            // Causal, on the diagonal: queries before j0 see none of these keys (skip whole
            // NR-panels of them: r_lo), and keys past the block's last query are seen by none
            // (every GEMM stops at the first cols_e).
            const int64_t r_lo = p.causal ? min64(max64(j0 - i0, 0) / nr * nr, rows) : 0;
            const int64_t cols_e = p.causal ? min64(cols, i0 + rows - j0) : cols, rows_e = rows - r_lo;
            if (rows_e <= 0 || cols_e <= 0) continue;
            const GemmPacked k_e = prefix(ka[jb], cols_e), v_e = prefix(va[jb], cols_e);
            const GemmPacked q_e = panels_from<T>(qbd[hl * nq + iq], r_lo / nr, rows_e);
            const GemmPacked g_e = panels_from<T>(gbd[hl * nq + iq], r_lo / nr, rows_e);
            T* s_e = sbuf + r_lo;
            T* dp_e = dpbuf + r_lo;
            T* pd_e = pdbuf + r_lo;
            // S^T = scale * K_j Q_i^T,  dP^T = V_j dO_i^T   (keys x queries, row stride qbp)
            matmul<T>(cols_e, rows_e, E, packed(&k_e), packed(&q_e), s_e, qbp, scale, T(0), gs);
            matmul<T>(cols_e, rows_e, Ev, packed(&v_e), packed(&g_e), dp_e, qbp, T(1), T(0), gs);
            if (p.mask_kind != AttentionMask::none && p.m_sl != 0)
              add_row_mask(s_e, static_cast<int>(qbp), rows_e, cols_e, p, b, h, i0 + r_lo, j0);
            // per query: visible keys, logsumexp (0 where -inf: those rows see nothing), D
            panel_limits(limit, static_cast<int>(qbp), rows, i0, j0, cols_e, p.causal);
            bool full = true;
            for (int64_t q = r_lo; q < qbp; ++q) {
              const bool live = q < rows && lse_all[bh * L + i0 + q] != neg_inf<T>();
              if (!live) limit[q] = 0;
              full = full && limit[q] >= cols_e;
              lse_l[q] = live ? lse_all[bh * L + i0 + q] : T(0);
              d_l[q] = live ? dvec[bh * L + i0 + q] : T(0);
            }
            limits_as(limf, limit, static_cast<int>(qbp));
            const int v_lo = static_cast<int>(r_lo / VS);
            for (int64_t s = 0; s < cols_e; ++s) {
              T* sv = sbuf + s * qbp;
              T* dpv = dpbuf + s * qbp;
              for (int v = v_lo; v < nvq; ++v) {
                const V x = apply_key_mask(V::load(sv + v * VS), p.mask_kind, km, s) - V::load(lse_l + v * VS);
                const V dd = V::load(d_l + v * VS);
                V pr, ds;
                if (full) {
                  pr = vec_exp(x);
                  ds = pr * (V::load(dpv + v * VS) - dd);
                } else {
                  const auto ok = V::gt(V::load(limf + v * VS), V::broadcast(static_cast<T>(s)));
                  pr = V::select(ok, vec_exp(x), zero);
                  ds = V::select(ok, pr * (V::load(dpv + v * VS) - dd), zero);
                }
                pr.store(sv + v * VS);
                if (!in.dropout) ds.store(dpv + v * VS);
              }
            }
            if (in.dropout) {
              // P Z for dV, dP Z for dS; dS^T = P^T (Z dP^T - D)
              for (int64_t s = 0; s < cols_e; ++s)
                for (int64_t q = r_lo; q < qbp; ++q) pdbuf[s * qbp + q] = sbuf[s * qbp + q];
              dropout_panel<T>(pd_e, dp_e, static_cast<int>(qbp), rows_e, cols_e, p, bh, i0 + r_lo, j0,
                               in.drop_threshold, in.keep_scale, keys);
              for (int64_t s = 0; s < cols_e; ++s) {
                for (int v = v_lo; v < nvq; ++v) {
                  const auto ok = V::gt(V::load(limf + v * VS), V::broadcast(static_cast<T>(s)));
                  const T* sv = sbuf + s * qbp + v * VS;
                  T* dpv = dpbuf + s * qbp + v * VS;
                  V::select(ok, V::load(sv) * (V::load(dpv) - V::load(d_l + v * VS)), zero).store(dpv);
                }
              }
            }
            // dV_j += (P Z)^T dO_i;  dK_j += scale * dS^T Q_i   (A = keys x queries, row stride qbp)
            const int64_t ie = i0 + r_lo;
            matmul<T>(cols_e, Ev, rows_e, strided(pd_e, qbp, 1),
                      strided(go + b * p.go_sb + h * p.go_sh + ie * p.go_sl, p.go_sl, 1), dvj, Ev, T(1), T(1), gs);
            matmul<T>(cols_e, E, rows_e, strided(dp_e, qbp, 1), strided(in.q_head(p, b, h) + ie * p.q_sl, p.q_sl, 1),
                      dkj, E, scale, T(1), gs);
            // dQ_i^T += scale * K_j^T dS^T over the cols_e keys seen (a k-prefix of the packed K_j^T)
            matmul<T>(E, rows_e, cols_e, packed(&kt[jb]), strided(dp_e, qbp, 1), dqt + (hl * nq + iq) * E * qbp + r_lo,
                      qbp, scale, T(1), gs);
          }
        }
      }
      // dQ = (dQ^T)^T, into the gradient (one chunk) or this chunk's partial
      T* dst = chunks == 1 ? dq : partial + c * q_rows * E;
      for (int64_t hl = 0; hl < group; ++hl) {
        const int64_t bh = b * Hq + hk * group + hl;
        for (int64_t iq = 0; iq < nq; ++iq) {
          const int64_t i0 = iq * qb, rows = min64(qb, L - i0);
          const T* t = dqt + (hl * nq + iq) * E * qbp;
          T* d = dst + (bh * L + i0) * E;
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t e = 0; e < E; ++e) d[r * E + e] = t[e * qbp + r];
        }
      }
    }

    if (chunks > 1) {
#pragma omp for schedule(static)
      for (int64_t r = 0; r < q_rows; ++r) {
        T* d = dq + r * E;
        for (int64_t e = 0; e < E; ++e) d[e] = partial[r * E + e];
        for (int64_t cc = 1; cc < chunks; ++cc) {
          const T* sp = partial + (cc * q_rows + r) * E;
          for (int64_t e = 0; e < E; ++e) d[e] += sp[e];
        }
      }
    }
  }
  delete[] desc_all;
}

}  // namespace

// Entry point (float32 / float64; the bindings have rejected other dtypes).
void attention_backward(const AttentionParams& p) {
  BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { backward_impl<T>(p); });
}

}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
