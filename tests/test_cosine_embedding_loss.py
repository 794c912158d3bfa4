"""Tests of the cosine embedding loss (paper eq. 2) against a slow, obviously correct reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cosinetrack.losses.cosine_embedding import CosineEmbeddingLoss
from cosinetrack.losses.stacked import StackedLoss

EPS = 1e-8


pytestmark = pytest.mark.usefixtures("single_thread")


# --------------------------------------------------------------------------- reference
def _center(lab: np.ndarray, i: int) -> tuple[float, float]:
    """Mean over frames where ``i`` exists of its per-frame center of mass."""
    cs = []
    for frame in lab:
        ys, xs = np.nonzero(frame == i)
        if len(ys):
            cs.append((ys.mean(), xs.mean()))
    return float(np.mean([c[0] for c in cs])), float(np.mean([c[1] for c in cs]))


def _is_neighbor(lab: np.ndarray, i: int, j: int, radius, rule: str, bg: int) -> bool:
    if radius is None or i == bg:
        return True
    pj = np.argwhere(lab == j)[:, 1:]  # (y, x) of every pixel of j, all frames
    if rule == "disc":
        cy, cx = _center(lab, i)
        return any((y - cy) ** 2 + (x - cx) ** 2 <= radius**2 for y, x in pj)
    pi = np.argwhere(lab == i)[:, 1:]
    return any((y1 - y2) ** 2 + (x1 - x2) ** 2 <= radius**2 for y1, x1 in pi for y2, x2 in pj)


def _cos(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """cos(a, v) for one vector a and rows v, each norm clamped below at EPS."""
    return (v @ a) / (torch.linalg.vector_norm(a).clamp_min(EPS) * torch.linalg.vector_norm(v, dim=1).clamp_min(EPS))


def reference_loss(emb, lab, radius=None, rule="disc", ignore=None, targets=None, bg=0, ign=-1):
    """Paper eq. 2 with python loops over samples, instances and pixels. emb (B,T,D,H,W), lab (B,T,H,W)."""
    lab = lab.numpy().copy()
    if ignore is not None:
        lab[ignore.numpy()] = ign
    losses = []
    for b in range(lab.shape[0]):
        ids = sorted(set(lab[b][lab[b] != ign].tolist()))
        if not ids:
            continue
        pixels = {i: [tuple(p) for p in np.argwhere(lab[b] == i)] for i in ids}
        vecs = {i: torch.stack([emb[b, t, :, y, x] for t, y, x in pixels[i]]) for i in ids}
        terms = []
        for i in ids if targets is None else targets[b]:
            mean = vecs[i].sum(0) / len(pixels[i])
            term1 = 1 - _cos(mean, vecs[i]).sum() / len(pixels[i])
            nbrs = [j for j in ids if j != i and _is_neighbor(lab[b], i, j, radius, rule, bg)]
            if nbrs:
                cos2 = torch.cat([_cos(mean, vecs[j]) ** 2 for j in nbrs])
                term2 = cos2.sum() / cos2.numel()
            else:
                term2 = 0.0
            terms.append(term1 + term2)
        losses.append(sum(terms) / len(terms))
    return sum(losses) / len(losses)


# --------------------------------------------------------------------------- data
def random_labels(rng, b=2, t=3, h=12, w=12, n=5, ignore_frac=0.1):
    """Voronoi cells (ids not contiguous) that drift over frames, background, ignore pixels, a partial frame."""
    ids = rng.choice(np.arange(1, 40), size=n, replace=False)
    lab = np.zeros((b, t, h, w), dtype=np.int64)
    yy, xx = np.mgrid[:h, :w]
    for s in range(b):
        seeds = rng.uniform(0, [h, w], size=(n, 2))
        for f in range(t):
            seeds = seeds + rng.normal(0, 0.7, size=seeds.shape)
            d = (yy[None] - seeds[:, 0, None, None]) ** 2 + (xx[None] - seeds[:, 1, None, None]) ** 2
            near = d.argmin(0)
            lab[s, f] = np.where(d.min(0) < 6.0, ids[near], 0)
    lab[rng.random(lab.shape) < ignore_frac] = -1
    if t > 1:
        lab[0, 1][lab[0, 1] == 0] = -1  # partially segmented frame: background masked
    return torch.from_numpy(lab)


def _run(loss, emb, lab, **kw):
    x = emb.detach().clone().requires_grad_(True)
    val = loss(x, lab, **kw)
    val.backward()
    return val.detach(), x.grad


@pytest.mark.parametrize("case", range(4))
@pytest.mark.parametrize("radius,rule", [(None, "disc"), (3.0, "disc"), (4.5, "disc"), (2.0, "dilation")])
def test_matches_reference(case, radius, rule):
    rng = np.random.default_rng(case)
    lab = random_labels(rng)
    emb = torch.from_numpy(rng.normal(size=(2, 3, 4, 12, 12)))
    ignore = torch.from_numpy(rng.random(lab.shape) < 0.05) if case % 2 else None
    loss = CosineEmbeddingLoss(neighbor_radius=radius, neighbor_rule=rule, max_instances=None)
    val, grad = _run(loss, emb, lab, ignore_mask=ignore)
    ref_val, ref_grad = _run(lambda x, y, **k: reference_loss(x, y, radius, rule, **k), emb, lab, ignore=ignore)
    torch.testing.assert_close(val, ref_val, rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-12)
    # float32 input: same value to float32 precision, float32 output
    val32 = loss(emb.float(), lab, ignore_mask=ignore)
    assert val32.dtype == torch.float32
    torch.testing.assert_close(val32.double(), ref_val, rtol=1e-5, atol=1e-6)


def test_pixel_chunks_do_not_change_the_result(monkeypatch):
    """The fused sum runs in pieces of frames; pieces that split frames give the same values and grads."""
    import cosinetrack.losses.cosine_embedding as module

    rng = np.random.default_rng(10)
    lab = random_labels(rng)
    emb = torch.from_numpy(rng.normal(size=(2, 3, 4, 12, 12)))
    loss = CosineEmbeddingLoss(3.0)
    whole = _run(loss, emb, lab)
    monkeypatch.setattr(module, "_CHUNK_PIXELS", 37)
    assert len(module._pixel_chunks([0, 0, 1], 144, 37)) == 12
    pieces = _run(loss, emb, lab)
    torch.testing.assert_close(pieces[0], whole[0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(pieces[1], whole[1], rtol=1e-10, atol=1e-14)


def test_finite_radius_is_not_trivial():
    """The random cases above do exercise the neighbor rules (some pairs are not neighbors)."""
    rng = np.random.default_rng(0)
    lab = random_labels(rng)
    emb = torch.from_numpy(rng.normal(size=(2, 3, 4, 12, 12)))
    full = CosineEmbeddingLoss(None)(emb, lab)
    for rule in ("disc", "dilation"):
        assert not torch.allclose(CosineEmbeddingLoss(2.0, rule)(emb, lab), full)


@pytest.mark.parametrize("rule", ["disc", "dilation"])
def test_gradcheck(rule):
    rng = np.random.default_rng(3)
    lab = random_labels(rng, b=1, t=2, h=6, w=6, n=3, ignore_frac=0.1)
    emb = torch.from_numpy(rng.normal(size=(1, 2, 3, 6, 6))).requires_grad_(True)
    loss = CosineEmbeddingLoss(neighbor_radius=2.5, neighbor_rule=rule)
    assert torch.autograd.gradcheck(lambda x: loss(x, lab), (emb,))


@pytest.mark.parametrize("radius", [None, 5.0])
def test_ideal_and_bad_embeddings(radius):
    rng = np.random.default_rng(1)
    lab = random_labels(rng, n=6, ignore_frac=0.0)
    ids = torch.unique(lab[lab >= 0])
    one_hot = (lab[:, :, None] == ids[None, None, :, None, None]).double()  # (B, T, D=#ids, H, W)
    one_hot = one_hot * torch.from_numpy(rng.uniform(0.5, 2.0, size=lab.shape))[:, :, None]  # any scale
    loss = CosineEmbeddingLoss(radius)
    assert float(loss(one_hot, lab)) < 1e-10
    same = torch.ones_like(one_hot)  # every instance the same direction: term2 = 1 for everyone
    assert float(loss(same, lab)) > 0.9


@pytest.mark.parametrize("rule", ["disc", "dilation"])
def test_huge_radius_equals_all_instances(rule):
    rng = np.random.default_rng(2)
    lab = random_labels(rng)
    emb = torch.from_numpy(rng.normal(size=(2, 3, 4, 12, 12))).float()
    a = _run(CosineEmbeddingLoss(None), emb, lab)
    b = _run(CosineEmbeddingLoss(1e9, rule), emb, lab)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("rule", ["disc", "dilation"])
def test_far_instances_are_not_neighbors(rule):
    lab = torch.full((1, 2, 32, 32), -1, dtype=torch.long)  # cells only (background unlabeled)
    lab[:, :, 3:7, 3:7] = 1  # A
    lab[:, :, 24:28, 24:28] = 2  # B: far from A
    lab[:, :, 3:7, 9:13] = 3  # C: 2 px from A
    basis = torch.eye(4)

    def embed(directions):  # label -> basis direction
        return basis[torch.tensor(directions)[lab]].permute(0, 1, 4, 2, 3).contiguous()

    loss = CosineEmbeddingLoss(6.0, rule)
    far_same = embed([0, 1, 1, 2])  # A and B share a direction, C differs
    assert float(loss(far_same, lab)) < 1e-6
    assert float(CosineEmbeddingLoss(None)(far_same, lab)) > 0.3
    near_same = embed([0, 1, 2, 1])  # A and C share a direction
    assert float(loss(near_same, lab)) > 0.3


def test_robustness():
    rng = np.random.default_rng(4)
    lab = random_labels(rng)
    emb = torch.from_numpy(rng.normal(size=(2, 3, 4, 12, 12))).float()
    loss = CosineEmbeddingLoss(3.0)

    def check(e, y, expect=None, **kw):
        val, grad = _run(loss, e, y, **kw)
        assert torch.isfinite(val) and torch.isfinite(grad).all()
        if expect is not None:
            torch.testing.assert_close(val, torch.as_tensor(expect, dtype=val.dtype), rtol=1e-5, atol=1e-6)
        return val, grad

    # zero embeddings at some pixels (and a whole instance of zeros)
    dead = (lab == int(lab[lab > 0][0])) | (torch.arange(12)[:, None] < 4) & (torch.arange(12) < 4)
    zero = emb * (~dead)[:, :, None]  # zero vectors at some pixels and on a whole instance
    check(zero, lab, reference_loss(zero.double(), lab, 3.0).item())
    # absent ids (ids not contiguous) are covered by random_labels; only background
    bg_only = torch.where(lab >= 0, 0, -1)
    check(emb, bg_only, reference_loss(emb.double(), bg_only, 3.0).item())
    # a single foreground instance and no background
    one = torch.where(lab >= 0, 7, -1)
    check(emb, one)
    # all ignored: zero, with a gradient path
    val, grad = check(emb, torch.full_like(lab, -1), 0.0)
    assert torch.count_nonzero(grad) == 0
    val, grad = check(emb, lab, 0.0, ignore_mask=torch.ones_like(lab, dtype=torch.bool))
    # one sample of the batch unlabeled: mean over the other only
    part = lab.clone()
    part[1] = -1
    check(emb, part, reference_loss(emb.double(), part, 3.0).item())


def test_shapes_still_images_and_channel_dim():
    rng = np.random.default_rng(5)
    lab = random_labels(rng, t=1)
    emb = torch.from_numpy(rng.normal(size=(2, 1, 4, 12, 12)))
    loss = CosineEmbeddingLoss(4.0)
    ref = loss(emb, lab)
    torch.testing.assert_close(loss(emb[:, 0], lab[:, 0]), ref)  # (B, D, H, W) with (B, H, W)
    torch.testing.assert_close(loss(emb[:, 0], lab), ref)  # (B, D, H, W) with (B, 1, H, W)
    torch.testing.assert_close(loss(emb, lab[:, :, None]), ref)  # (B, T, 1, H, W)
    with pytest.raises(ValueError):
        loss(emb, lab[:, :, :6])
    with pytest.raises(ValueError):
        CosineEmbeddingLoss(neighbor_rule="square")


def test_label_ids_are_arbitrary():
    """Relabelling the instances (huge ids: the sort fallback; negative ids other than -1) changes nothing."""
    rng = np.random.default_rng(9)
    lab = random_labels(rng)
    emb = torch.from_numpy(rng.normal(size=(2, 3, 4, 12, 12)))
    ids = torch.unique(lab[lab > 0])
    for new in (ids * 10**9 + 7, -ids - 5):
        lut = dict(zip(ids.tolist(), new.tolist()))
        relab = lab.clone().apply_(lambda v, lut=lut: lut.get(v, v))
        for radius, rule in [(None, "disc"), (3.0, "disc"), (3.0, "dilation")]:
            loss = CosineEmbeddingLoss(radius, rule, max_instances=None)
            torch.testing.assert_close(loss(emb, relab), loss(emb, lab), rtol=1e-12, atol=1e-12)


def test_bf16_autocast():
    rng = np.random.default_rng(6)
    lab = random_labels(rng, n=6)
    x = torch.from_numpy(rng.normal(size=(2 * 3, 3, 12, 12))).float()
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    loss = CosineEmbeddingLoss(4.0)
    ref = loss(conv(x).view(2, 3, 8, 12, 12), lab)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
        assert out.dtype == torch.bfloat16
        val = loss(out.view(2, 3, 8, 12, 12), lab)
    assert val.dtype == torch.float32 and torch.isfinite(val)
    val.backward()
    assert all(torch.isfinite(p.grad).all() for p in conv.parameters())
    assert abs(val.item() - ref.item()) < 0.03
    # bf16 input without autocast
    e = conv(x).detach().view(2, 3, 8, 12, 12).bfloat16().requires_grad_(True)
    v = loss(e, lab)
    v.backward()
    assert v.dtype == torch.float32 and torch.isfinite(e.grad).all() and abs(v.item() - ref.item()) < 0.03


def test_instance_cap():
    lab = torch.zeros(2, 2, 20, 24, dtype=torch.long)
    for k in range(40):  # 40 instances of 2x2 px on a 5 x 8 grid, ids 11..50
        y, x = divmod(k, 8)
        lab[:, :, 1 + 4 * y : 3 + 4 * y, 1 + 3 * x : 3 + 3 * x] = 11 + k
    lab[1, :, :, 10:] = -1  # sample 1 has fewer instances (< 32): no draw there
    rng = np.random.default_rng(7)
    emb = torch.from_numpy(rng.normal(size=(2, 2, 3, 20, 24)))
    n_fg = [len(torch.unique(lab[s][lab[s] > 0])) for s in range(2)]
    assert n_fg[0] == 40 and n_fg[1] < 32
    loss = CosineEmbeddingLoss(5.0, max_instances=32, seed=0)
    val = loss(emb, lab)
    used = [x.tolist() for x in loss.last_instances]
    assert len(used[0]) == 33 and used[0][0] == 0 and len(set(used[0])) == 33
    assert len(used[1]) == n_fg[1] + 1
    ref = reference_loss(emb, lab, 5.0, targets=used)
    torch.testing.assert_close(val, ref, rtol=1e-5, atol=1e-12)
    # deterministic with a seeded generator, different for another seed
    again = CosineEmbeddingLoss(5.0, max_instances=32, seed=0)
    assert torch.equal(again(emb, lab), val) and [x.tolist() for x in again.last_instances] == used
    other = CosineEmbeddingLoss(5.0, max_instances=32)
    other(emb, lab, generator=torch.Generator().manual_seed(1))
    assert other.last_instances[0].tolist() != used[0]
    # no cap: every instance
    full = CosineEmbeddingLoss(5.0, max_instances=None)
    full(emb, lab)
    assert len(full.last_instances[0]) == 41


def test_stacked_loss():
    rng = np.random.default_rng(8)
    lab = random_labels(rng)
    out1 = torch.from_numpy(rng.normal(size=(2, 3, 4, 12, 12))).requires_grad_(True)
    out2 = torch.from_numpy(rng.normal(size=(2, 3, 4, 12, 12))).requires_grad_(True)
    inner = CosineEmbeddingLoss(3.0)
    total = StackedLoss(inner)((out1, out2), lab)
    torch.testing.assert_close(total, inner(out1, lab) + inner(out2, lab))
    total.backward()
    assert out1.grad is not None and out2.grad is not None


def test_bundle_target():
    from monai.bundle import ConfigParser

    config = {
        "loss": {
            "_target_": "cosinetrack.losses.StackedLoss",
            "loss": {
                "_target_": "cosinetrack.losses.cosine_embedding.CosineEmbeddingLoss",
                "neighbor_radius": 50,
                "neighbor_rule": "disc",
                "max_instances": 16,
                "seed": 0,
            },
        }
    }
    loss = ConfigParser(config).get_parsed_content("loss")
    assert isinstance(loss.loss, CosineEmbeddingLoss) and loss.loss.neighbor_radius == 50.0
    lab = random_labels(np.random.default_rng(11))
    assert torch.isfinite(loss((torch.randn(2, 3, 4, 12, 12),) * 2, lab))
