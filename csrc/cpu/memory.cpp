// CPU kernels of the memory ops. Parallel over the batch; each task makes one pass over its bank.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <vector>

#include "../ops.h"
#include "isa.h"
#include "ncl/memory.h"

namespace ncl {
namespace {


bool is_blas_type(const at::Tensor& t) { return t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble; }

}  // namespace

at::Tensor soft_read_fwd_cpu(const at::Tensor& bank, const at::Tensor& weights) {
  check_kernel_inputs({&bank, &weights}, "soft_read_fwd");
  // In fp32/fp64 a read is a batched matrix product, and BLAS beats any loop written here (measured in
  // benchmarks/RESULTS.md); the loops below serve fp16/bf16, which need fp32 accumulation.
  if (is_blas_type(bank)) return at::bmm(weights, bank);
  const int64_t B = bank.size(0), N = bank.size(1), D = bank.size(2), H = weights.size(1);
  at::Tensor out = at::empty({B, H, D}, bank.options());
  NCL_DISPATCH_FLOATS(bank.scalar_type(), "soft_read_fwd_cpu", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* m = bank.data_ptr<scalar_t>();
    const scalar_t* w = weights.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    isa::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<A> acc(H * D);
      for (int64_t b = b0; b < b1; ++b) {
        std::fill(acc.begin(), acc.end(), A(0));
        // i outer so each bank row is read once for all heads.
        for (int64_t i = 0; i < N; ++i) {
          const scalar_t* row = m + (b * N + i) * D;
          for (int64_t h = 0; h < H; ++h) {
            const A wi = static_cast<A>(w[(b * H + h) * N + i]);
            A* a = acc.data() + h * D;
            for (int64_t d = 0; d < D; ++d) a[d] += wi * static_cast<A>(row[d]);
          }
        }
        for (int64_t j = 0; j < H * D; ++j) o[b * H * D + j] = static_cast<scalar_t>(acc[j]);
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> soft_read_bwd_cpu(const at::Tensor& grad, const at::Tensor& bank,
                                                     const at::Tensor& weights) {
  check_kernel_inputs({&grad, &bank, &weights}, "soft_read_bwd");
  if (is_blas_type(bank)) return {at::bmm(weights.transpose(1, 2), grad), at::bmm(grad, bank.transpose(1, 2))};
  const int64_t B = bank.size(0), N = bank.size(1), D = bank.size(2), H = weights.size(1);
  at::Tensor g_bank = at::empty_like(bank);
  at::Tensor g_w = at::empty_like(weights);
  NCL_DISPATCH_FLOATS(bank.scalar_type(), "soft_read_bwd_cpu", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* g = grad.data_ptr<scalar_t>();
    const scalar_t* m = bank.data_ptr<scalar_t>();
    const scalar_t* w = weights.data_ptr<scalar_t>();
    scalar_t* gm = g_bank.data_ptr<scalar_t>();
    scalar_t* gw = g_w.data_ptr<scalar_t>();
    isa::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<A> gb(H * D), row(D);
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t j = 0; j < H * D; ++j) gb[j] = static_cast<A>(g[b * H * D + j]);
        // One pass over the bank: each row yields its own gradient row and one dot per head.
        for (int64_t i = 0; i < N; ++i) {
          const scalar_t* mi = m + (b * N + i) * D;
          std::fill(row.begin(), row.end(), A(0));
          for (int64_t h = 0; h < H; ++h) {
            const A wi = static_cast<A>(w[(b * H + h) * N + i]);
            const A* gh = gb.data() + h * D;
            A s = A(0);
            NCL_SIMD_SUM(s)
            for (int64_t d = 0; d < D; ++d) {
              row[d] += wi * gh[d];
              s += gh[d] * static_cast<A>(mi[d]);
            }
            gw[(b * H + h) * N + i] = static_cast<scalar_t>(s);
          }
          scalar_t* gmi = gm + (b * N + i) * D;
          for (int64_t d = 0; d < D; ++d) gmi[d] = static_cast<scalar_t>(row[d]);
        }
      }
    });
  });
  return {g_bank, g_w};
}

at::Tensor soft_write_fwd_cpu(const at::Tensor& bank, const at::Tensor& weights, const at::Tensor& values,
                              const at::Tensor& gate) {
  check_kernel_inputs({&bank, &weights, &values, &gate}, "soft_write_fwd");
  const int64_t B = bank.size(0), N = bank.size(1), D = bank.size(2);
  at::Tensor out = at::empty_like(bank);
  NCL_DISPATCH_FLOATS(bank.scalar_type(), "soft_write_fwd_cpu", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* m = bank.data_ptr<scalar_t>();
    const scalar_t* w = weights.data_ptr<scalar_t>();
    const scalar_t* v = values.data_ptr<scalar_t>();
    const scalar_t* gt = gate.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    isa::parallel_for(0, B * N, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / N;
        const A a = static_cast<A>(gt[b]) * static_cast<A>(w[r]);
        const scalar_t* mr = m + r * D;
        const scalar_t* vb = v + b * D;
        scalar_t* orow = o + r * D;
        for (int64_t d = 0; d < D; ++d)
          orow[d] = static_cast<scalar_t>(soft_write_value<A>(static_cast<A>(mr[d]), a, static_cast<A>(vb[d])));
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> soft_write_bwd_cpu(
    const at::Tensor& grad, const at::Tensor& bank, const at::Tensor& weights, const at::Tensor& values,
    const at::Tensor& gate) {
  check_kernel_inputs({&grad, &bank, &weights, &values, &gate}, "soft_write_bwd");
  const int64_t B = bank.size(0), N = bank.size(1), D = bank.size(2);
  at::Tensor g_bank = at::empty_like(bank), g_w = at::empty_like(weights);
  at::Tensor g_v = at::empty_like(values), g_gate = at::empty_like(gate);
  NCL_DISPATCH_FLOATS(bank.scalar_type(), "soft_write_bwd_cpu", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* g = grad.data_ptr<scalar_t>();
    const scalar_t* m = bank.data_ptr<scalar_t>();
    const scalar_t* w = weights.data_ptr<scalar_t>();
    const scalar_t* v = values.data_ptr<scalar_t>();
    const scalar_t* gt = gate.data_ptr<scalar_t>();
    scalar_t *gm = g_bank.data_ptr<scalar_t>(), *gw = g_w.data_ptr<scalar_t>();
    scalar_t *gv = g_v.data_ptr<scalar_t>(), *gg = g_gate.data_ptr<scalar_t>();
    isa::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<A> dv(D);
      for (int64_t b = b0; b < b1; ++b) {
        const A gate_b = static_cast<A>(gt[b]);
        std::fill(dv.begin(), dv.end(), A(0));
        A dgate = A(0);
        for (int64_t i = 0; i < N; ++i) {
          const int64_t r = b * N + i;
          const A wi = static_cast<A>(w[r]);
          const A a = gate_b * wi;
          A da = A(0);
          NCL_SIMD_SUM(da)
          for (int64_t d = 0; d < D; ++d) {
            const auto gr = soft_write_value_grad<A>(static_cast<A>(g[r * D + d]), static_cast<A>(m[r * D + d]), a,
                                                     static_cast<A>(v[b * D + d]));
            gm[r * D + d] = static_cast<scalar_t>(gr.m);
            da += gr.a;
            dv[d] += gr.v;
          }
          gw[r] = static_cast<scalar_t>(gate_b * da);  // a = gate * w
          dgate += wi * da;
        }
        for (int64_t d = 0; d < D; ++d) gv[b * D + d] = static_cast<scalar_t>(dv[d]);
        gg[b] = static_cast<scalar_t>(dgate);
      }
    });
  });
  return {g_bank, g_w, g_v, g_gate};
}

namespace {

// Per batch row: |m_i| for every cell, and the (H, N) matrix of raw dots <k_h, m_i>.
template <typename scalar_t, typename A>
void norms_and_dots(const scalar_t* m, const scalar_t* k, int64_t N, int64_t H, int64_t D, A* mnorm, A* knorm,
                    A* dots) {
  for (int64_t i = 0; i < N; ++i) mnorm[i] = std::sqrt(dot<A>(m + i * D, m + i * D, D));
  for (int64_t h = 0; h < H; ++h) {
    knorm[h] = std::sqrt(dot<A>(k + h * D, k + h * D, D));
    for (int64_t i = 0; i < N; ++i) dots[h * N + i] = dot<A>(k + h * D, m + i * D, D);
  }
}

}  // namespace

at::Tensor content_address_fwd_cpu(const at::Tensor& bank, const at::Tensor& keys, const at::Tensor& strength) {
  check_kernel_inputs({&bank, &keys, &strength}, "content_address_fwd");
  const int64_t B = bank.size(0), N = bank.size(1), D = bank.size(2), H = keys.size(1);
  at::Tensor out = at::empty({B, H, N}, bank.options());
  NCL_DISPATCH_FLOATS(bank.scalar_type(), "content_address_fwd_cpu", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* m = bank.data_ptr<scalar_t>();
    const scalar_t* k = keys.data_ptr<scalar_t>();
    const scalar_t* s = strength.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    isa::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<A> mnorm(N), knorm(H), z(H * N);
      for (int64_t b = b0; b < b1; ++b) {
        norms_and_dots<scalar_t, A>(m + b * N * D, k + b * H * D, N, H, D, mnorm.data(), knorm.data(), z.data());
        for (int64_t h = 0; h < H; ++h) {
          const A beta = static_cast<A>(s[b * H + h]);
          A* zh = z.data() + h * N;
          A zmax = -INFINITY;
          for (int64_t i = 0; i < N; ++i) {
            zh[i] = beta * eps_cosine<A>(zh[i], knorm[h], mnorm[i]);
            zmax = std::max(zmax, zh[i]);
          }
          A total = A(0);
          for (int64_t i = 0; i < N; ++i) total += (zh[i] = std::exp(zh[i] - zmax));
          for (int64_t i = 0; i < N; ++i) o[(b * H + h) * N + i] = static_cast<scalar_t>(zh[i] / total);
        }
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> content_address_bwd_cpu(const at::Tensor& grad, const at::Tensor& out,
                                                                       const at::Tensor& bank, const at::Tensor& keys,
                                                                       const at::Tensor& strength) {
  check_kernel_inputs({&grad, &out, &bank, &keys, &strength}, "content_address_bwd");
  const int64_t B = bank.size(0), N = bank.size(1), D = bank.size(2), H = keys.size(1);
  at::Tensor g_bank = at::empty_like(bank), g_keys = at::empty_like(keys), g_s = at::empty_like(strength);
  NCL_DISPATCH_FLOATS(bank.scalar_type(), "content_address_bwd_cpu", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t *g = grad.data_ptr<scalar_t>(), *p = out.data_ptr<scalar_t>();
    const scalar_t *m = bank.data_ptr<scalar_t>(), *k = keys.data_ptr<scalar_t>();
    const scalar_t* s = strength.data_ptr<scalar_t>();
    scalar_t *gm = g_bank.data_ptr<scalar_t>(), *gk = g_keys.data_ptr<scalar_t>(), *gs = g_s.data_ptr<scalar_t>();
    isa::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<A> mnorm(N), knorm(H), dots(H * N), alpha(H * N), mself(N), acc(D);
      for (int64_t b = b0; b < b1; ++b) {
        const scalar_t* mb = m + b * N * D;
        const scalar_t* kb = k + b * H * D;
        norms_and_dots<scalar_t, A>(mb, kb, N, H, D, mnorm.data(), knorm.data(), dots.data());
        std::fill(mself.begin(), mself.end(), A(0));
        for (int64_t h = 0; h < H; ++h) {
          const int64_t row = (b * H + h) * N;
          const A beta = static_cast<A>(s[b * H + h]);
          const A gp = dot<A>(g + row, p + row, N);
          A dbeta = A(0), kself = A(0);
          for (int64_t i = 0; i < N; ++i) {
            const A dz = softmax_grad<A>(static_cast<A>(p[row + i]), static_cast<A>(g[row + i]), gp);
            const A dotv = dots[h * N + i];
            dbeta += dz * eps_cosine<A>(dotv, knorm[h], mnorm[i]);
            const A al = cosine_alpha<A>(dz * beta, knorm[h], mnorm[i]);
            alpha[h * N + i] = al;
            kself += al * dotv;
            mself[i] += al * dotv;
          }
          gs[b * H + h] = static_cast<scalar_t>(dbeta);
          // dk_h = Σ_i α_hi m_i − k_h · self(k_h)
          const A ks = cosine_self_scale<A>(kself, knorm[h]);
          for (int64_t d = 0; d < D; ++d) acc[d] = -ks * static_cast<A>(kb[h * D + d]);
          for (int64_t i = 0; i < N; ++i) {
            const A al = alpha[h * N + i];
            for (int64_t d = 0; d < D; ++d) acc[d] += al * static_cast<A>(mb[i * D + d]);
          }
          for (int64_t d = 0; d < D; ++d) gk[(b * H + h) * D + d] = static_cast<scalar_t>(acc[d]);
        }
        // dm_i = Σ_h α_hi k_h − m_i · self(m_i)
        for (int64_t i = 0; i < N; ++i) {
          const A ms = cosine_self_scale<A>(mself[i], mnorm[i]);
          for (int64_t d = 0; d < D; ++d) acc[d] = -ms * static_cast<A>(mb[i * D + d]);
          for (int64_t h = 0; h < H; ++h) {
            const A al = alpha[h * N + i];
            for (int64_t d = 0; d < D; ++d) acc[d] += al * static_cast<A>(kb[h * D + d]);
          }
          for (int64_t d = 0; d < D; ++d) gm[(b * N + i) * D + d] = static_cast<scalar_t>(acc[d]);
        }
      }
    });
  });
  return {g_bank, g_keys, g_s};
}

}  // namespace ncl
