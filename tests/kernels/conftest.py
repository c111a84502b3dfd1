"""Fixtures for the kernel tests; the cases themselves live in kernels/testing.py."""
import pytest

from kernels.testing import SPEC_IDS, SPECS


@pytest.fixture(params=SPECS, ids=SPEC_IDS)
def spec_case(request):
    return request.param
