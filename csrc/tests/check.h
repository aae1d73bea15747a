// A minimal test harness: CHECK_NEAR records failures, and main returns their count.
#pragma once

#include <cmath>
#include <cstdio>

namespace ncl_test {
inline int failures = 0;
}

#define NCL_CHECK_NEAR(a, b, tol)                                                                          \
  do {                                                                                                 \
    const double a_ = (a), b_ = (b);                                                                   \
    if (!(std::fabs(a_ - b_) <= (tol) * (1.0 + std::fabs(b_)))) {                                      \
      std::printf("%s:%d: %s = %.12g, expected %s = %.12g\n", __FILE__, __LINE__, #a, a_, #b, b_);      \
      ++ncl_test::failures;                                                                            \
    }                                                                                                  \
  } while (0)

#define NCL_CHECK(cond)                                                                                    \
  do {                                                                                                 \
    if (!(cond)) {                                                                                     \
      std::printf("%s:%d: NCL_CHECK(%s) failed\n", __FILE__, __LINE__, #cond);                             \
      ++ncl_test::failures;                                                                            \
    }                                                                                                  \
  } while (0)
