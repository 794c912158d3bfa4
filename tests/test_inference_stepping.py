"""``cosinetrack.inference.stepping``: one network step (stack pick, float32 out under amp) and the state layout."""

from __future__ import annotations

import pytest
import torch

from cosinetrack.inference import (
    PairSegmenter,
    ScaledPairSegmenter,
    TiledPairSegmenter,
    cast_state,
    check_stack,
    concat_states,
    split_state,
    state_nbytes,
    step_network,
)
from cosinetrack.networks import RecurrentStackedHourglass


def tiny_network(seed: int = 0, **kwargs) -> RecurrentStackedHourglass:
    torch.manual_seed(seed)
    return RecurrentStackedHourglass(1, 4, num_levels=2, num_filters=4, **kwargs).eval()


def _state(batch: int, seed: int = 0, size: int = 8):
    """A real network state of ``batch`` frames ``(batch, 1, size, size)``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        _, state = tiny_network().step(torch.randn(batch, 1, size, size, generator=gen))
    return state


@pytest.mark.parametrize("stack", [-1, 0, 1, -2])
def test_step_network_picks_the_stack_and_equals_network_step(stack):
    net = tiny_network()
    frames = torch.randn(3, 1, 8, 12, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref_out, ref_state = net.step(frames)
        ref_out2, _ = net.step(frames, ref_state)
        out, state = step_network(net, frames, None, stack=stack)
        out2, _ = step_network(net, frames, state, stack=stack)
    assert out.shape == (3, 4, 8, 12) and out.dtype == torch.float32
    torch.testing.assert_close(out, ref_out[stack], rtol=0, atol=0)
    torch.testing.assert_close(out2, ref_out2[stack], rtol=0, atol=0)
    for a, b in zip(state, ref_state):
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.mark.parametrize("amp", [True, "true", "auto", False])
def test_step_network_returns_float32_under_amp(amp):
    net = tiny_network()
    frames = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ref, _ = net.step(frames)
        out, state = step_network(net, frames, None, amp=amp, device="cpu")
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref[-1], rtol=0.1, atol=0.1)  # bfloat16 on CPU under amp
    assert isinstance(state, list) and all(isinstance(per, list) for per in state)


@pytest.mark.parametrize(
    "frames, stack, message",
    [
        (torch.zeros(1, 8, 8), -1, "expected frames"),
        (torch.zeros(1, 1, 1, 8, 8), -1, "expected frames"),
        (torch.zeros(1, 1, 8, 8), 2, "out of range"),
        (torch.zeros(1, 1, 8, 8), -3, "out of range"),
        (torch.zeros(1, 1, 8, 8), 1.0, "expected an int"),
        (torch.zeros(1, 1, 8, 8), True, "expected an int"),
    ],
)
def test_step_network_checks_its_arguments(frames, stack, message):
    with pytest.raises(ValueError, match=message):
        step_network(tiny_network(), frames, None, stack=stack)


@pytest.mark.parametrize("kind", [ScaledPairSegmenter, TiledPairSegmenter])
@pytest.mark.parametrize("stack, ok", [(0, True), (-1, True), (1, True), (2, False), (-3, False)])
def test_segmenters_share_the_base_and_check_the_stack(kind, stack, ok):
    net = tiny_network()
    if not ok:
        with pytest.raises(ValueError, match="stack"):
            kind(net, (8, 8), {}, stack=stack)
        return
    seg = kind(net, (8, 8), {}, stack=stack)
    assert isinstance(seg, PairSegmenter) and seg.stack == check_stack(net, stack) == stack
    assert seg.timings == {"network": 0.0, "clustering": 0.0}
    emb, state = seg.step_batch(torch.zeros(2, 1, 8, 8), None)
    assert emb.shape == (2, 4, 8, 8) and emb.dtype == torch.float32 and emb.device.type == "cpu"
    assert [len(per) for per in state] == [2, 2]


def test_pair_segmenter_is_abstract():
    with pytest.raises(TypeError):
        PairSegmenter(tiny_network(), {})


@pytest.mark.parametrize("sizes", [[1], [2, 3], [1, 1, 3], [4, 1]])
def test_concat_and_split_states_round_trip(sizes):
    parts = [_state(n, seed=i) for i, n in enumerate(sizes)]
    joined = concat_states(parts)
    assert len(joined) == 2 and [len(per) for per in joined] == [2, 2]
    assert [tuple(s.shape) for s in joined[0]] == [(sum(sizes), 4, 8, 8), (sum(sizes), 4, 4, 4)]
    back = split_state(joined, sizes)
    assert len(back) == len(sizes)
    for got, want in zip(back, parts):
        for a, b in zip(got, want):
            for x, y in zip(a, b):
                torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert state_nbytes(joined) == sum(state_nbytes(p) for p in parts)


@pytest.mark.parametrize(
    "states, sizes, expected",
    [([None, None], [1, 2], None), ([[[], []], [[], []]], [1], [[], []])],  # zero state; non-recurrent network
)
def test_state_helpers_on_empty_states(states, sizes, expected):
    assert concat_states(states) == expected
    assert split_state(expected, sizes) == [expected] * len(sizes)
    assert state_nbytes(expected) == 0
    assert cast_state(expected, torch.bfloat16) == expected


def test_non_recurrent_network_state_layout():
    net = tiny_network(recurrent=False)
    with torch.inference_mode():
        _, state = step_network(net, torch.zeros(2, 1, 8, 8), None)
    assert state == [[], []] and state_nbytes(state) == 0 and concat_states([state, state]) == [[], []]


@pytest.mark.parametrize("dtype, itemsize", [(torch.float32, 4), (torch.bfloat16, 2), (torch.float16, 2)])
def test_cast_state_and_nbytes(dtype, itemsize):
    state = _state(3)
    cast = cast_state(state, dtype)
    assert all(s.dtype == dtype and s.is_contiguous() for per in cast for s in per)
    numel = 3 * 4 * (8 * 8 + 4 * 4) * 2  # batch x filters x levels' pixels x stacks
    assert state_nbytes(state) == numel * 4
    assert state_nbytes(cast) == numel * itemsize
    torch.testing.assert_close(cast_state(cast, torch.float32)[0][0], state[0][0], rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: concat_states([]), "no states"),
        (lambda: concat_states([None, _state(1)]), "zero state"),
        (lambda: concat_states([_state(1), [[torch.zeros(1, 4, 8, 8)]]]), "levels per stack"),
        (lambda: concat_states([_state(1), "state"]), r"states\[1\]"),
        (lambda: split_state(_state(3), [1, 1]), "add up to 2"),
        (lambda: split_state(_state(3), []), "non-empty"),
        (lambda: split_state(_state(3), [3, 0]), ">= 1"),
        (lambda: cast_state(_state(1), "bfloat16"), "torch.dtype"),
        (lambda: state_nbytes([[torch.zeros(4, 8)]]), "stack 0 level 0"),
    ],
)
def test_state_helpers_check_their_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
