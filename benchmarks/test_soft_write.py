"""soft_write: fused vs eager reference vs torch.compile(reference), forward and forward+backward."""

import pytest
from conftest import bench_memory_op, memory_params


@pytest.mark.parametrize("size, mode, impl", memory_params())
def test_soft_write(benchmark, size, mode, impl):
    bench_memory_op(benchmark, "soft_write", size, mode, impl)
