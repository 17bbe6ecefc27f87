"""Every test here runs once per kernel family this CPU can run (scalar, AVX2, AVX-512), so a
kernel that only some CPUs pick is still tested wherever it can run."""
import pytest

from ..conftest import SIMD_NAMES, available_simd_levels, simd_level_fixture


# Module scope: Hypothesis tests may not use function-scoped fixtures.
@pytest.fixture(autouse=True, scope="module", params=available_simd_levels(), ids=SIMD_NAMES.get)
def simd_level(request):
    yield from simd_level_fixture(request)
