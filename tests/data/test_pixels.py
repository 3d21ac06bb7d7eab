import torch

from styleseg.data.pixels import quantize, to_signed, to_uint8


def test_every_uint8_value_survives_the_round_trip_and_spans_minus_one_to_one():
    u = torch.arange(256, dtype=torch.uint8)
    x = to_signed(u)
    assert x.dtype == torch.float32 and x[0] == -1 and x[-1] == 1
    assert torch.equal(to_uint8(x), u)


def test_to_uint8_rounds_to_nearest_and_clamps():
    step = 1 / 127.5
    x = torch.tensor([-1 + 0.49 * step, -1 + 0.51 * step, -3.0, 2.0, 1 - 0.4 * step])
    assert to_uint8(x).tolist() == [0, 1, 0, 255, 255]


def test_quantize_is_idempotent_and_within_half_a_level():
    x = torch.linspace(-1, 1, 1001).to(torch.bfloat16)
    q = quantize(x)
    assert q.dtype == torch.float32
    assert torch.equal(quantize(q), q)
    assert (q - x.float()).abs().max() <= 0.5 / 127.5 + 1e-6
