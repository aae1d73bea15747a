// CPU kernels of the soft stack update. Parallel over the batch; each task makes one pass over its stack.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <vector>

#include "../ops.h"
#include "isa.h"
#include "ncl/stack.h"

namespace ncl {
namespace {


void check_stack_inputs(const at::Tensor& slots, const at::Tensor& ptr, const at::Tensor& push, const at::Tensor& pop,
                        const at::Tensor& item, const char* op) {
  check_kernel_inputs({&slots, &ptr, &push, &pop, &item}, op);
  TORCH_CHECK(slots.dim() == 3 && ptr.dim() == 2 && push.dim() == 1 && pop.dim() == 1 && item.dim() == 2, op,
              ": expected slots (B,S,W), ptr (B,S), push (B,), pop (B,), item (B,W)");
  const int64_t B = slots.size(0), S = slots.size(1), W = slots.size(2);
  TORCH_CHECK(S >= 2, op, ": a stack needs S >= 2 positions");
  TORCH_CHECK(ptr.size(0) == B && ptr.size(1) == S && push.size(0) == B && pop.size(0) == B && item.size(0) == B &&
                  item.size(1) == W,
              op, ": shapes do not agree");
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> stack_update_fwd_cpu(
    const at::Tensor& slots, const at::Tensor& ptr, const at::Tensor& push, const at::Tensor& pop,
    const at::Tensor& item) {
  check_stack_inputs(slots, ptr, push, pop, item, "stack_update_fwd");
  const int64_t B = slots.size(0), S = slots.size(1), W = slots.size(2);
  at::Tensor new_slots = at::empty_like(slots), new_ptr = at::empty_like(ptr);
  at::Tensor over = at::empty_like(push), under = at::empty_like(pop);
  NCL_DISPATCH_FLOATS(slots.scalar_type(), "stack_update_fwd_cpu", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t *m = slots.data_ptr<scalar_t>(), *p = ptr.data_ptr<scalar_t>();
    const scalar_t *pu = push.data_ptr<scalar_t>(), *po = pop.data_ptr<scalar_t>(), *it = item.data_ptr<scalar_t>();
    scalar_t *om = new_slots.data_ptr<scalar_t>(), *op = new_ptr.data_ptr<scalar_t>();
    scalar_t *ov = over.data_ptr<scalar_t>(), *un = under.data_ptr<scalar_t>();
    isa::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const scalar_t* pb = p + b * S;
        const A u = static_cast<A>(pu[b]), o = static_cast<A>(po[b]);
        const scalar_t* ib = it + b * W;
        for (int64_t s = 0; s < S; ++s) {
          const A r = stack::up_at<A>(pb, s, S);
          op[b * S + s] = static_cast<scalar_t>(
              stack::new_pointer<A>(static_cast<A>(pb[s]), r, stack::down_at<A>(pb, s, S), u, o));
          const A a = u * r;  // the soft_write coefficient of slot s
          const scalar_t* ms = m + (b * S + s) * W;
          scalar_t* os = om + (b * S + s) * W;
          for (int64_t d = 0; d < W; ++d)
            os[d] = static_cast<scalar_t>(soft_write_value<A>(static_cast<A>(ms[d]), a, static_cast<A>(ib[d])));
        }
        ov[b] = static_cast<scalar_t>(u * static_cast<A>(pb[S - 1]));
        un[b] = static_cast<scalar_t>(o * static_cast<A>(pb[0]));
      }
    });
  });
  return {new_slots, new_ptr, over, under};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> stack_update_bwd_cpu(
    const at::Tensor& grad_slots, const at::Tensor& grad_ptr, const at::Tensor& grad_overflow,
    const at::Tensor& grad_underflow, const at::Tensor& slots, const at::Tensor& ptr, const at::Tensor& push,
    const at::Tensor& pop, const at::Tensor& item) {
  check_stack_inputs(slots, ptr, push, pop, item, "stack_update_bwd");
  check_kernel_inputs({&slots, &grad_slots, &grad_ptr, &grad_overflow, &grad_underflow}, "stack_update_bwd");
  TORCH_CHECK(grad_slots.sizes() == slots.sizes() && grad_ptr.sizes() == ptr.sizes() &&
                  grad_overflow.sizes() == push.sizes() && grad_underflow.sizes() == pop.sizes(),
              "stack_update_bwd: each gradient must have its output's shape");
  const int64_t B = slots.size(0), S = slots.size(1), W = slots.size(2);
  at::Tensor g_slots = at::empty_like(slots), g_ptr = at::empty_like(ptr), g_push = at::empty_like(push);
  at::Tensor g_pop = at::empty_like(pop), g_item = at::empty_like(item);
  NCL_DISPATCH_FLOATS(slots.scalar_type(), "stack_update_bwd_cpu", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t *gm = grad_slots.data_ptr<scalar_t>(), *gp = grad_ptr.data_ptr<scalar_t>();
    const scalar_t *go = grad_overflow.data_ptr<scalar_t>(), *gu = grad_underflow.data_ptr<scalar_t>();
    const scalar_t *m = slots.data_ptr<scalar_t>(), *p = ptr.data_ptr<scalar_t>();
    const scalar_t *pu = push.data_ptr<scalar_t>(), *po = pop.data_ptr<scalar_t>(), *it = item.data_ptr<scalar_t>();
    scalar_t *dm = g_slots.data_ptr<scalar_t>(), *dp = g_ptr.data_ptr<scalar_t>();
    scalar_t *du_out = g_push.data_ptr<scalar_t>(), *do_out = g_pop.data_ptr<scalar_t>();
    scalar_t* di = g_item.data_ptr<scalar_t>();
    isa::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<A> dr(S), dd(S), gi(W);
      for (int64_t b = b0; b < b1; ++b) {
        const scalar_t* pb = p + b * S;
        const scalar_t* ib = it + b * W;
        const A u = static_cast<A>(pu[b]), o = static_cast<A>(po[b]);
        const A g_over = static_cast<A>(go[b]), g_under = static_cast<A>(gu[b]);
        std::fill(gi.begin(), gi.end(), A(0));
        A du = g_over * static_cast<A>(pb[S - 1]), dop = g_under * static_cast<A>(pb[0]);
        for (int64_t s = 0; s < S; ++s) {
          const A r = stack::up_at<A>(pb, s, S), dn = stack::down_at<A>(pb, s, S), ps = static_cast<A>(pb[s]);
          const A a = u * r, g_s = static_cast<A>(gp[b * S + s]);
          const int64_t row = (b * S + s) * W;
          A da = A(0);  // gradient of the slot-write coefficient a_s = u up(p)_s
          for (int64_t d = 0; d < W; ++d) {
            const auto g = soft_write_value_grad<A>(static_cast<A>(gm[row + d]), static_cast<A>(m[row + d]), a,
                                                    static_cast<A>(ib[d]));
            dm[row + d] = static_cast<scalar_t>(g.m);
            gi[d] += g.v;
            da += g.a;
          }
          du += da * r + g_s * (r - ps);
          dop += g_s * (dn - ps);
          dr[s] = u * (da + g_s);
          dd[s] = o * g_s;
        }
        for (int64_t j = 0; j < S; ++j)
          dp[b * S + j] = static_cast<scalar_t>(stack::pointer_grad<A>(dr.data(), dd.data(), static_cast<A>(gp[b * S + j]),
                                                                       u, o, g_over, g_under, j, S));
        for (int64_t d = 0; d < W; ++d) di[b * W + d] = static_cast<scalar_t>(gi[d]);
        du_out[b] = static_cast<scalar_t>(du);
        do_out[b] = static_cast<scalar_t>(dop);
      }
    });
  });
  return {g_slots, g_ptr, g_push, g_pop, g_item};
}

}  // namespace ncl
