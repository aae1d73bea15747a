// CPU kernels of the control step. Forward: parallel over the batch. Backward: a pass over the batch for the
// per-sample gradients (and the per-line J, D), then a pass over the lines for the program's op and tgt
// gradients, which sum over the batch (no atomics, deterministic).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <vector>

#include "../ops.h"
#include "isa.h"
#include "ncl/control.h"

namespace ncl {
namespace {


void check_control_inputs(const at::Tensor& ip, const at::Tensor& op, const at::Tensor& chi0, const at::Tensor& tgt,
                          const at::Tensor& rstk, const at::Tensor& rsp, const char* name) {
  check_kernel_inputs({&ip, &op, &chi0, &tgt, &rstk, &rsp}, name);
  TORCH_CHECK(ip.dim() == 2 && op.dim() == 2 && chi0.dim() == 1 && tgt.dim() == 2 && rstk.dim() == 3 && rsp.dim() == 2,
              name, ": expected ip (B,L), op (L,O), chi0 (B,), tgt (L,L), rstk (B,S,L), rsp (B,S)");
  const int64_t B = ip.size(0), L = ip.size(1), S = rsp.size(1);
  TORCH_CHECK(op.size(0) == L && op.size(1) == control::kNumOps && chi0.size(0) == B && tgt.size(0) == L &&
                  tgt.size(1) == L && rstk.size(0) == B && rstk.size(1) == S && rstk.size(2) == L && rsp.size(0) == B,
              name, ": shapes do not agree");
}

// top(rstk)_m = Σ_s rsp_s rstk[s, m], for one sample.
template <typename A, typename T> void return_to(const T* rstk, const T* rsp, int64_t S, int64_t L, A* out) {
  std::fill(out, out + L, A(0));
  for (int64_t s = 0; s < S; ++s) {
    const A w = static_cast<A>(rsp[s]);
    const T* row = rstk + s * L;
    for (int64_t m = 0; m < L; ++m) out[m] += w * static_cast<A>(row[m]);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> control_fwd_cpu(const at::Tensor& ip, const at::Tensor& op, const at::Tensor& chi0,
                                                   const at::Tensor& tgt, const at::Tensor& rstk, const at::Tensor& rsp) {
  check_control_inputs(ip, op, chi0, tgt, rstk, rsp, "control_fwd");
  const int64_t B = ip.size(0), L = ip.size(1), S = rsp.size(1), O = control::kNumOps;
  at::Tensor new_ip = at::empty_like(ip), halted = at::empty_like(chi0);
  NCL_DISPATCH_FLOATS(ip.scalar_type(), "control_fwd_cpu", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t *pi = ip.data_ptr<scalar_t>(), *po = op.data_ptr<scalar_t>(), *pc = chi0.data_ptr<scalar_t>();
    const scalar_t *pt = tgt.data_ptr<scalar_t>(), *pr = rstk.data_ptr<scalar_t>(), *ps = rsp.data_ptr<scalar_t>();
    scalar_t *out = new_ip.data_ptr<scalar_t>(), *ph = halted.data_ptr<scalar_t>();
    isa::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<A> acc(L), ret_to(L);
      for (int64_t b = b0; b < b1; ++b) {
        const A c = static_cast<A>(pc[b]);
        std::fill(acc.begin(), acc.end(), A(0));
        A halt = A(0), ret = A(0), run_off = A(0);
        for (int64_t l = 0; l < L; ++l) {
          const A ipl = static_cast<A>(pi[b * L + l]);
          const auto o = control::line_ops<A>(po + l * O);
          const A jump = control::jumped(o, ipl, c), move = control::moved_on(o, ipl, c);
          if (l + 1 < L) acc[l + 1] += move; else run_off = move;
          halt += ipl * o.halt;
          ret += ipl * o.ret;
          if (jump != A(0)) {  // a sharp program jumps from few lines: skip the others' target rows
            const scalar_t* row = pt + l * L;
            for (int64_t m = 0; m < L; ++m) acc[m] += jump * static_cast<A>(row[m]);
          }
        }
        return_to<A>(pr + b * S * L, ps + b * S, S, L, ret_to.data());
        A ret_sum = A(0);
        for (int64_t m = 0; m < L; ++m) {
          out[b * L + m] = static_cast<scalar_t>(acc[m] + ret * ret_to[m]);
          ret_sum += ret_to[m];
        }
        ph[b] = static_cast<scalar_t>(halt + run_off + ret * (A(1) - ret_sum));
      }
    });
  });
  return {new_ip, halted};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> control_bwd_cpu(
    const at::Tensor& grad_ip, const at::Tensor& grad_halted, const at::Tensor& ip, const at::Tensor& op,
    const at::Tensor& chi0, const at::Tensor& tgt, const at::Tensor& rstk, const at::Tensor& rsp) {
  check_control_inputs(ip, op, chi0, tgt, rstk, rsp, "control_bwd");
  check_kernel_inputs({&ip, &grad_ip, &grad_halted}, "control_bwd");
  TORCH_CHECK(grad_ip.sizes() == ip.sizes() && grad_halted.sizes() == chi0.sizes(),
              "control_bwd: each gradient must have its output's shape");
  const int64_t B = ip.size(0), L = ip.size(1), S = rsp.size(1), O = control::kNumOps;
  at::Tensor g_ip = at::empty_like(ip), g_op = at::empty_like(op), g_chi = at::empty_like(chi0);
  at::Tensor g_tgt = at::empty_like(tgt), g_rstk = at::empty_like(rstk), g_rsp = at::empty_like(rsp);
  NCL_DISPATCH_FLOATS(ip.scalar_type(), "control_bwd_cpu", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t *gi = grad_ip.data_ptr<scalar_t>(), *gh = grad_halted.data_ptr<scalar_t>();
    const scalar_t *pi = ip.data_ptr<scalar_t>(), *po = op.data_ptr<scalar_t>(), *pc = chi0.data_ptr<scalar_t>();
    const scalar_t *pt = tgt.data_ptr<scalar_t>(), *pr = rstk.data_ptr<scalar_t>(), *ps = rsp.data_ptr<scalar_t>();
    scalar_t *dip = g_ip.data_ptr<scalar_t>(), *dop = g_op.data_ptr<scalar_t>(), *dchi = g_chi.data_ptr<scalar_t>();
    scalar_t *dtgt = g_tgt.data_ptr<scalar_t>(), *drstk = g_rstk.data_ptr<scalar_t>(), *drsp = g_rsp.data_ptr<scalar_t>();
    // Per sample and line: J (what a jump from the line receives), D (what moving on receives); per sample dR.
    std::vector<A> J(B * L), D(B * L), dR(B);
    isa::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<A> g(L), ret_to(L);
      for (int64_t b = b0; b < b1; ++b) {
        const A c = static_cast<A>(pc[b]), g_h = static_cast<A>(gh[b]);
        for (int64_t m = 0; m < L; ++m) g[m] = static_cast<A>(gi[b * L + m]);
        return_to<A>(pr + b * S * L, ps + b * S, S, L, ret_to.data());
        A g_ret = A(0), ret_sum = A(0), ret = A(0), dc = A(0);
        for (int64_t m = 0; m < L; ++m) {
          g_ret += g[m] * ret_to[m];
          ret_sum += ret_to[m];
        }
        const A dr = g_ret + g_h * (A(1) - ret_sum);
        dR[b] = dr;
        for (int64_t l = 0; l < L; ++l) {
          const A ipl = static_cast<A>(pi[b * L + l]);
          const auto o = control::line_ops<A>(po + l * O);
          const A j = dot<A>(pt + l * L, g.data(), L), d = l + 1 < L ? g[l + 1] : g_h;
          J[b * L + l] = j;
          D[b * L + l] = d;
          dip[b * L + l] = static_cast<scalar_t>(control::ip_grad(o, j, d, dr, g_h, c));
          dc += control::chi_grad(o, ipl, j, d);
          ret += ipl * o.ret;
        }
        dchi[b] = static_cast<scalar_t>(dc);
        // top(rstk) receives ret·(g_m − g_h); it spreads over the slots by the pointer.
        for (int64_t s = 0; s < S; ++s) {
          const A w = static_cast<A>(ps[b * S + s]);
          const scalar_t* row = pr + (b * S + s) * L;
          scalar_t* grow = drstk + (b * S + s) * L;
          A acc = A(0);
          for (int64_t m = 0; m < L; ++m) {
            const A dret = ret * (g[m] - g_h);
            grow[m] = static_cast<scalar_t>(w * dret);
            acc += static_cast<A>(row[m]) * dret;
          }
          drsp[b * S + s] = static_cast<scalar_t>(acc);
        }
      }
    });
    // The program's fields are shared by the batch: one task per line sums over it.
    isa::parallel_for(0, L, 1, [&](int64_t l0, int64_t l1) {
      std::vector<A> gt(L), go(O);
      for (int64_t l = l0; l < l1; ++l) {
        std::fill(gt.begin(), gt.end(), A(0));
        std::fill(go.begin(), go.end(), A(0));
        const auto o = control::line_ops<A>(po + l * O);
        for (int64_t b = 0; b < B; ++b) {
          const A ipl = static_cast<A>(pi[b * L + l]), c = static_cast<A>(pc[b]);
          const A j = J[b * L + l], d = D[b * L + l];
          for (int k = 0; k < O; ++k) go[k] += ipl * control::op_coef(k, j, d, dR[b], static_cast<A>(gh[b]), c);
          const A jump = control::jumped(o, ipl, c);
          if (jump != A(0))
            for (int64_t m = 0; m < L; ++m) gt[m] += jump * static_cast<A>(gi[b * L + m]);
        }
        for (int k = 0; k < O; ++k) dop[l * O + k] = static_cast<scalar_t>(go[k]);
        for (int64_t m = 0; m < L; ++m) dtgt[l * L + m] = static_cast<scalar_t>(gt[m]);
      }
    });
  });
  return {g_ip, g_op, g_chi, g_tgt, g_rstk, g_rsp};
}

}  // namespace ncl
