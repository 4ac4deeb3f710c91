from __future__ import annotations

import pytest

from privfl.errors import ConfigError
from privfl.he import HE_STANDARD_MAX_BITS, PRESETS, CkksKeys, CkksParams, preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_meets_the_128_bit_bound_and_builds_a_context(name):
    params = preset(name)
    assert sum(params.coeff_mod_bit_sizes) <= HE_STANDARD_MAX_BITS[params.poly_modulus_degree]
    keys = CkksKeys.generate(params)
    ctx = keys.load()
    assert ctx.global_scale == params.scale


@pytest.mark.parametrize(
    ("n", "bits"),
    [(4096, (60, 50)), (8192, (60, 60, 60, 40)), (16384, (60,) * 7 + (40,) * 1)],
)
def test_custom_set_above_the_bound_is_refused_naming_the_values(n, bits):
    with pytest.raises(ConfigError) as err:
        CkksParams("custom", n, bits, 40)
    text = str(err.value)
    assert str(HE_STANDARD_MAX_BITS[n]) in text
    assert str(sum(bits)) in text
    assert f"N={n}" in text


def test_a_set_exactly_at_the_bound_is_accepted():
    assert sum(CkksParams("edge", 4096, (49, 60), 30).coeff_mod_bit_sizes) == 109


@pytest.mark.parametrize(
    ("n", "bits", "scale_bits"),
    [
        (3000, (60, 40), 40),  # not a power of two
        (8192, (60,), 40),  # no special prime
        (8192, (61, 40), 40),  # prime too large for SEAL
        (8192, (60, 40), 59),  # no headroom
        (8192, (60, 40), 10),  # too imprecise
    ],
)
def test_invalid_parameters_are_refused(n, bits, scale_bits):
    with pytest.raises(ConfigError):
        CkksParams("bad", n, bits, scale_bits)


def test_derived_quantities_of_the_default_preset():
    p = preset("fl-8192")
    assert p.slots == 4096
    assert p.data_modulus_bits == 60
    assert p.headroom == 2.0**18


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="fl-8192"):
        preset("fl-1")
