"""content_address: fused vs eager reference vs torch.compile(reference), forward and forward+backward."""

import pytest
from conftest import bench_memory_op, memory_params


@pytest.mark.parametrize("size, mode, impl", memory_params())
def test_content_address(benchmark, size, mode, impl):
    bench_memory_op(benchmark, "content_address", size, mode, impl)
