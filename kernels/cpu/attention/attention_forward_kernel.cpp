// Fused softmax attention on the CPU, forward (flash-attention style). Compiled once per ISA
// path (see kernels/cpu/simd.h); kernels/cpu/attention/attention.cpp dispatches. Semantics and
// the dropout hash: kernels/include/bigmodel/attention.h; the panel layout of the score blocks:
// attention_common.h.
//
// Per (batch, head, block of qb queries), with Q_i packed as a GEMM B operand and every key
// block K_j (kb keys) as an A operand and V_j^T as another (packed by each thread into its own
// buffer when a query block of the kv head first needs them, then reused by the head's later
// query blocks):
//
//   for each key block j (causal: only those the block's queries can see)
//     S^T = scale * K_j Q_i^T          GEMM into the panel buffer (C row stride NR), per panel
//     per panel, vertically (a vector = Vec::size queries, no horizontal work):
//       mask + running max in one sweep over the keys, then p = exp(s - m_new) and the row
//       sums in a second; alpha = exp(m_old - m_new); l = alpha * l + sum
//     O^T = diag(alpha) O^T + V_j^T P^T   GEMM, the panels read as a packed B operand
//   O = O^T^T / l, logsumexp = m + log l
//
// Causal: each panel (NR queries) works only on the keys its last query can see: S^T, the two
// passes and P V all stop there (a k-prefix of the packed V_j^T and of the panels), so on the
// diagonal a panel of a 128-query block costs what its own triangle costs, not the block's.
// Where the panels of a block see different numbers of keys, P V is one GEMM per panel.
//
// The GEMM core reads pre-packed K, V and Q only (nothing is packed inside the key loop but
// K_j / V_j^T the first time a thread needs them), and the probabilities are produced directly
// in its packed-B layout. Only the output and one logsumexp per row are written; the L x S
// matrix never exists beyond one block per thread.
#include <omp.h>

#include <cmath>

#include "cpu/attention/attention_common.h"

namespace bigmodel::cpu::BIGMODEL_ISA_NS {
namespace {

struct FwdBlocking {
  int64_t qb, kb;
  int nr, mr;
};

template <typename T>
FwdBlocking forward_blocking(const AttentionParams& p) {
  const GemmBlocking g = gemm_blocking(dtype_of<T>());
  FwdBlocking b;
  b.nr = g.NR;
  b.mr = g.MR;
  // 128 queries x ~252 keys (measured on (2, 8, 2048, 64)); the key block is a multiple of MR
  // (whole register tiles in S^T = K Q^T), the query block of NR (whole panels).
  b.kb = g.MR * max64(1, 252 / g.MR);
  b.qb = round_up(min64(max64(p.L, 1), 128), g.NR);
  return b;
}

template <typename T>
void forward_impl(const AttentionParams& p) {
  using V = Vec<T>;
  constexpr int VS = V::size;
  const Inputs<T> in(p);
  const FwdBlocking bk = forward_blocking<T>(p);
  const int nr = bk.nr, nv = nr / VS;
  const int64_t L = p.L, S = p.S, E = p.E, Ev = p.Ev, qb = bk.qb, kb = bk.kb;
  const int64_t nq = (L + qb - 1) / qb, nkv = (S + kb - 1) / kb;
  const int64_t items = p.B * p.Hq * nq;
  if (items == 0) return;  // every GEMM table has NR a multiple of the vector width (nv whole vectors)
  const int nt = threads_for(p, 4.0 * p.B * p.Hq * L * S * static_cast<double>(max64(E, Ev)), items);
  T* out = static_cast<T*>(p.output);
  T* lse_all = static_cast<T*>(p.logsumexp);
  const T scale = static_cast<T>(p.scale);

  // Per thread: K_j as A (keys x E) and V_j^T as A (Ev x keys) for every key block of the kv
  // head it works on (packed lazily, block by block, when a query block first needs them), Q_i
  // as B, the panels (qb queries x kb keys), O^T (Ev x qb), m / l / alpha per query, per-lane
  // limits and dropout keys, and GEMM scratch (none expected: all packed).
  const int64_t k_bytes = align64(packed_bytes<T>(GemmSide::a, kb, E));
  const int64_t v_bytes = align64(packed_bytes<T>(GemmSide::a, Ev, kb));
  T dummy[1];
  const GemmPacked sa = shape_only<T>(GemmSide::a, kb, E, bk.mr, dummy), sb = shape_only<T>(GemmSide::b, nr, E, nr, dummy);
  const GemmPacked va = shape_only<T>(GemmSide::a, Ev, kb, bk.mr, dummy), pb = shape_only<T>(GemmSide::b, qb, kb, nr, dummy);
  const int64_t g_bytes = align64(max64(gemm_scratch_bytes(gemm_params<T>(kb, nr, E, packed(&sa), packed(&sb), dummy, nr, 1, 0)),
                                        gemm_scratch_bytes(gemm_params<T>(Ev, qb, kb, packed(&va), packed(&pb), dummy, qb, 1, 1))));
  // Where the threads' copies of a kv head would crowd the L3 (measured: 2 threads x 8 MiB at
  // (1,8,8192,128) made the non-causal forward 9% slower than one shared copy; 2 x 2 MiB at
  // (1,8,4096,64) was faster than it), the team instead packs one kv head together and shares
  // it, with a barrier per kv head; that needs enough query blocks per head to share out.
  const int64_t head_bytes = nkv * (k_bytes + v_bytes);
  const bool shared_kv = nt > 1 && nt * head_bytes > (int64_t(8) << 20) && in.group * nq >= 4 * nt;
  const int64_t kv_off = 0, q_off = kv_off + (shared_kv ? 0 : head_bytes);
  const int64_t s_off = q_off + align64(packed_bytes<T>(GemmSide::b, qb, E));
  const int64_t o_off = s_off + align64(qb * kb * sizeof(T)), st_off = o_off + align64(Ev * qb * sizeof(T));
  const int64_t lim_off = st_off + align64(3 * qb * sizeof(T));
  const int64_t pcol_off = lim_off + align64(nr * (sizeof(int64_t) + sizeof(T)));
  const int64_t key_off = pcol_off + align64(qb / nr * sizeof(int64_t));
  const int64_t g_off = key_off + align64(nr * sizeof(uint32_t));
  const int64_t per_thread = g_off + g_bytes;
  // O(threads * (S + qb) * E) in all: small enough for the allocator to reuse across calls
  // (a whole-call copy of packed K and V was paged in afresh by every call).
  const AlignedBuffer arena(per_thread * nt + (shared_kv ? head_bytes : 0));
  char* shared_base = arena.data() + per_thread * nt;
  GemmPacked* kv_desc = new GemmPacked[2 * nkv * (shared_kv ? 1 : nt)];
  // Work units: whole heads (in query-block order, so each thread packs a kv head's blocks
  // once) when there are enough of them to share out; else single query blocks.
  const bool by_head = p.B * p.Hq >= 4 * nt;
  const int64_t units = by_head ? p.B * p.Hq : items;

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = omp_get_thread_num();
    char* mine = arena.data() + per_thread * tid;
    GemmPacked* kd = kv_desc + (shared_kv ? 0 : 2 * nkv * tid);
    GemmPacked* vd = kd + nkv;
    int64_t packed_bkv = -1, packed_blocks = 0;  // kd / vd hold blocks [0, packed_blocks) of packed_bkv
    T* sbuf = reinterpret_cast<T*>(mine + s_off);
    T* ot = reinterpret_cast<T*>(mine + o_off);
    T* m = reinterpret_cast<T*>(mine + st_off);
    T* l = m + qb;
    T* alpha = l + qb;
    int64_t* limit = reinterpret_cast<int64_t*>(mine + lim_off);
    T* limf = reinterpret_cast<T*>(limit + nr);
    int64_t* pcols = reinterpret_cast<int64_t*>(mine + pcol_off);  // keys each panel saw in this block
    uint32_t* keys = reinterpret_cast<uint32_t*>(mine + key_off);
    const Scratch gs{mine + g_off, g_bytes};
    const V ninf = V::broadcast(neg_inf<T>()), zero = V::zero();

    // One block of qb queries: item = (batch * Hq + head) * nq + query block.
    auto run_item = [&](int64_t item) {
      const int64_t bh = item / nq, iq = item - bh * nq;
      const int64_t b = bh / p.Hq, h = bh - b * p.Hq, hk = h / in.group, bkv = b * p.Hkv + hk;
      const int64_t i0 = iq * qb, rows = min64(qb, L - i0), npan = (rows + nr - 1) / nr, qbp = npan * nr;
      const GemmPacked qd = pack<T>(GemmSide::b, rows, E, in.q_head(p, b, h) + i0 * p.q_sl, p.q_sl, 1, mine + q_off);
      fill(m, qbp, neg_inf<T>());
      fill(l, qbp, T(0));
      const int64_t kv_end = p.causal ? min64(S, i0 + rows) : S;
      bool first = true;
      for (int64_t jb = 0; jb * kb < kv_end; ++jb) {
        const int64_t j0 = jb * kb, cols_full = min64(kb, S - j0), cols = min64(cols_full, kv_end - j0);
        if (packed_bkv != bkv) packed_bkv = bkv, packed_blocks = 0;
        for (; packed_blocks <= jb; ++packed_blocks) {
          const int64_t pj0 = packed_blocks * kb, n = min64(kb, S - pj0);
          char* dst = mine + kv_off + packed_blocks * (k_bytes + v_bytes);
          kd[packed_blocks] = pack<T>(GemmSide::a, n, E, in.k_head(p, b, hk) + pj0 * p.k_sl, p.k_sl, 1, dst);
          vd[packed_blocks] =
              pack<T>(GemmSide::a, Ev, n, in.v_head(p, b, hk) + pj0 * p.v_sl, 1, p.v_sl, dst + k_bytes);
        }
        const GemmPacked& kfull = kd[jb];
        const void* km = key_mask<T>(p, b, h, j0);
        bool ragged = false;  // panels see different numbers of keys (causal, on the diagonal)
        for (int64_t pn = 0; pn < npan; ++pn) {
          const int64_t rows_p = min64(nr, rows - pn * nr), r0 = i0 + pn * nr;
          // keys of this block the panel's last query can see (causal: fewer on the diagonal;
          // keys past it are never visible to the panel, so S^T, softmax and P V stop there)
          const int64_t cols_p = p.causal ? min64(cols, max64(r0 + rows_p - j0, 0)) : cols;
          pcols[pn] = cols_p;
          ragged = ragged || cols_p != cols;
          T* x = sbuf + pn * cols_full * nr;
          const GemmPacked qp = panels_from<T>(qd, pn, rows_p);
          const GemmPacked kj = prefix(kfull, cols_p);
          // S^T = scale * K_j Q_i^T for this panel's queries and visible keys
          matmul<T>(cols_p, rows_p, E, packed(&kj), packed(&qp), x, nr, scale, T(0), gs);
          if (p.mask_kind != AttentionMask::none && p.m_sl != 0) add_row_mask(x, nr, rows_p, cols_p, p, b, h, r0, j0);
          const bool full = panel_limits(limit, nr, rows_p, r0, j0, cols_p, p.causal) >= cols_p;
          limits_as(limf, limit, nr);
          for (int v = 0; v < nv; ++v) {
            T* xv = x + v * VS;
            const int64_t off = pn * nr + v * VS;
            const V lim = V::load(limf + v * VS);
            // 1) mask + max over the keys (invisible keys and padding lanes become -inf)
            V mx = ninf;
            for (int64_t s = 0; s < cols_p; ++s) {
              V xs = apply_key_mask(V::load(xv + s * nr), p.mask_kind, km, s);
              if (!full) xs = V::select(V::gt(lim, V::broadcast(static_cast<T>(s))), xs, ninf);
              if (km != nullptr || !full) xs.store(xv + s * nr);
              mx = vec_max(mx, xs);
            }
            // 2) p = exp(s - m_new), sums; a row that has seen nothing keeps m = -inf, p = 0
            const V m_old = V::load(m + off), m_new = vec_max(m_old, mx);
            const V m_use = V::select(V::eq(m_new, ninf), zero, m_new);
            V sum = zero;
            for (int64_t s = 0; s < cols_p; ++s) {
              const V e = vec_exp(V::load(xv + s * nr) - m_use);
              e.store(xv + s * nr);
              sum = sum + e;
            }
            const V a = vec_exp(m_old - m_use);  // exp(m_old - m_new); 0 while nothing was seen
            (V::load(l + off) * a + sum).store(l + off);
            m_new.store(m + off);
            a.store(alpha + off);
          }
          if (in.dropout) {
            dropout_panel<T>(x, nullptr, nr, rows_p, cols_p, p, bh, r0, j0, in.drop_threshold, in.keep_scale, keys);
          }
        }
        // O^T = diag(alpha) O^T + V_j^T P^T   (the first block overwrites). The panels' k_total
        // is cols_full and V_j^T's the job's block: both are read as k-prefixes of that.
        if (!first) {
          for (int64_t e = 0; e < Ev; ++e) {
            T* o = ot + e * qbp;
            for (int64_t r = 0; r < qbp; r += VS) (V::load(o + r) * V::load(alpha + r)).store(o + r);
          }
        }
        const GemmPacked pj = panels_as_b<T>(sbuf, rows, cols_full, nr);
        const GemmPacked* vj = &vd[jb];
        if (!ragged) {
          matmul<T>(Ev, rows, cols, packed(vj), packed(&pj), ot, qbp, T(1), first ? T(0) : T(1), gs);
        } else {
          for (int64_t pn = 0; pn < npan; ++pn) {  // per panel, over the keys it saw (K may be 0)
            const GemmPacked pp = panels_from<T>(pj, pn, min64(nr, rows - pn * nr));
            matmul<T>(Ev, pp.outer, pcols[pn], packed(vj), packed(&pp), ot + pn * nr, qbp, T(1),
                      first ? T(0) : T(1), gs);
          }
        }
        first = false;
      }
      // O = O^T^T / l; logsumexp = m + log l; rows that saw no key: zeros and -inf
      T* lse = lse_all + bh * L + i0;
      T* o = out + (bh * L + i0) * Ev;
      for (int64_t r = 0; r < rows; ++r) {
        const bool seen = !first && l[r] > T(0);
        const T inv = seen ? T(1) / l[r] : T(0);
        for (int64_t e = 0; e < Ev; ++e) o[r * Ev + e] = seen ? ot[e * qbp + r] * inv : T(0);
        lse[r] = seen ? m[r] + std::log(l[r]) : neg_inf<T>();
      }
    };

    if (!shared_kv) {
#pragma omp for schedule(dynamic, 1)
      for (int64_t unit = 0; unit < units; ++unit) {
        const int64_t item_begin = by_head ? unit * nq : unit, item_end = by_head ? item_begin + nq : unit + 1;
        for (int64_t item = item_begin; item < item_end; ++item) run_item(item);
      }
    } else {
      for (int64_t bkv = 0; bkv < p.B * p.Hkv; ++bkv) {
        const int64_t b = bkv / p.Hkv, hk = bkv - b * p.Hkv;
#pragma omp for schedule(static)
        for (int64_t jb = 0; jb < nkv; ++jb) {
          const int64_t j0 = jb * kb, n = min64(kb, S - j0);
          char* dst = shared_base + jb * (k_bytes + v_bytes);
          kd[jb] = pack<T>(GemmSide::a, n, E, in.k_head(p, b, hk) + j0 * p.k_sl, p.k_sl, 1, dst);
          vd[jb] = pack<T>(GemmSide::a, Ev, n, in.v_head(p, b, hk) + j0 * p.v_sl, 1, p.v_sl, dst + k_bytes);
        }
        packed_bkv = bkv;  // every block of it is in the shared buffer: run_item packs nothing
        packed_blocks = nkv;
        // the group's query blocks, largest first when causal (their cost grows with the block)
#pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < in.group * nq; ++u) {
          const int64_t hl = u % in.group, r = u / in.group, iq = p.causal ? nq - 1 - r : r;
          run_item((b * p.Hq + hk * in.group + hl) * nq + iq);
        }
      }
    }
  }
  delete[] kv_desc;
}

}  // namespace

// Entry point (float32 / float64; the bindings have rejected other dtypes).
void attention_forward(const AttentionParams& p) {
  BIGMODEL_FLOAT_SWITCH(p.dtype, T, [&] { forward_impl<T>(p); });
}

}  // namespace bigmodel::cpu::BIGMODEL_ISA_NS
