"""Training precision: bf16 autocast only where it is fast."""

import pytest
from tests.elsewhere import OTHER_KERNELS, assert_script_prints_ok

from terse.nn.precision import bf16_is_fast, use_bf16


def test_explicit_settings_and_bad_values():
    assert use_bf16("bf16") is True and use_bf16("no") is False
    assert use_bf16("auto") is bf16_is_fast("cpu")
    assert bf16_is_fast("mps") is False
    with pytest.raises(ValueError):
        use_bf16("fp8")


def test_a_cpu_without_fast_bf16_kernels_trains_in_fp32():
    # oneDNN limited to pre-AVX512 kernels emulates bf16 (tens of times slower than fp32)
    script = "from terse.nn.precision import use_bf16; assert not use_bf16('auto'); print('ok')"
    assert_script_prints_ok(script, env=OTHER_KERNELS)
