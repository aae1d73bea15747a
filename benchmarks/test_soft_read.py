"""soft_read: fused vs eager reference vs torch.compile(reference), forward and forward+backward."""

import pytest
from conftest import bench_memory_op, memory_params


@pytest.mark.parametrize("size, mode, impl", memory_params())
def test_soft_read(benchmark, size, mode, impl):
    bench_memory_op(benchmark, "soft_read", size, mode, impl)
