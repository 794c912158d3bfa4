"""Cosine embedding loss for instance segmentation and tracking (Payer et al., MICCAI 2018, eq. 2).

For every instance ``i`` of a sample (background included, as an instance of its own)::

    e_bar_i = mean of e_p over p in S_i                       (all frames of the clip together)
    L_i     = 1 - mean_{p in S_i} cos(e_bar_i, e_p)  +  mean_{p in N_i} cos(e_bar_i, e_p) ** 2

and the loss of a sample is the mean of ``L_i`` over its instances. Taking ``e_bar_i`` over the whole
clip is what makes an instance's embedding consistent through time.

Implementation. With ``m_i = e_bar_i / |e_bar_i|`` and ``l_p`` the label of pixel ``p``, the whole batch
loss is ``1 + sum_{p, i} A[l_p, i] cos(m_i, e_p) + B[l_p, i] cos(m_i, e_p) ** 2`` with two small
label-only tables: ``A[l, i] = -w_i / |S_i|`` when ``l = i`` (else 0) and ``B[l, i] = w_i / |N_i|`` when
label ``l`` is a neighbor of ``i`` (else 0), ``w_i`` the weight of instance ``i`` in the batch mean. A
custom autograd function evaluates that sum in pieces of at most ``_CHUNK_PIXELS`` pixels of one frame
(one ``(pixels x D) @ (D x I)`` matmul and one row gather of the tables per piece) and recomputes the
cosines in its backward: time ``O(pixels * I * D)``, extra memory ``O(_CHUNK_PIXELS * I)``; never an
``(I x pixels)`` matrix for the clip, never ``(I x pixels x D)``. The per-label sums ``e_bar`` use
``index_add``; label bookkeeping uses ``bincount`` look-up tables (no sort of the pixels).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from cosinetrack.labels import IGNORE_LABEL
from cosinetrack.options import renamed

__all__ = ["CosineEmbeddingLoss", "NEIGHBOR_RULES"]

NEIGHBOR_RULES = ("disc", "dilation")
NEIGHBOUR_RULES = NEIGHBOR_RULES  # deprecated spelling of earlier versions
_CHUNK_PIXELS = 1 << 16  # pixels per step of the fused cosine sum (memory ~ 3 * 4 B * pixels * instances)


class CosineEmbeddingLoss(nn.Module):
    """Cosine embedding loss of Payer et al. (2018), eq. 2, for clips and still images.

    Args:
        neighbor_radius: ``r_N`` in pixels of the network input. ``None``: every other instance of the
            sample (and the background) is a neighbor (the leaf setting). A number: neighbors are
            chosen by ``neighbor_rule``. The paper uses 50 px for cells (150 Fluo-MSC, 25 Fluo-HeLa).
        neighbor_rule: how a finite ``neighbor_radius`` is used (label-only, no gradient):

            * ``"disc"`` (default; the authors' reference behavior): the center ``c_i`` of instance ``i``
              is the mean over the frames in which ``i`` has labeled pixels of its per-frame center of
              mass. Label ``j != i`` is a neighbor of ``i`` when at least one labeled pixel of ``j``, in
              any frame of the clip, lies in the closed disc ``|x - c_i| <= r_N``. The background is a
              neighbor when background pixels fall in the disc.
            * ``"dilation"``: the footprint of ``i`` (the union over the clip's frames of its pixel
              positions) is dilated by a Euclidean disc of radius ``r_N``; label ``j != i`` is a
              neighbor when its footprint (union over frames) meets the dilated footprint, i.e. when some
              pixel of ``i`` and some pixel of ``j`` (possibly in different frames) are at most ``r_N``
              apart.

            For either rule the **background as instance i** has all other labels of the sample as
            neighbors (it must differ from every cell; its center of mass is meaningless).
            ``N_i`` is the union over those labels of all their labeled pixels in all frames.
        max_instances: at most this many foreground instances per sample get a loss term (the paper's
            "at most 32 instances per mini-batch, to reduce memory"); when more are present, a random
            subset is drawn (uniformly, without replacement). The background is always kept and not
            counted. Pixels of instances that were not drawn still belong to the neighbor sets ``N_i``
            of the drawn ones (each drawn term is exactly the term of the full loss, so the capped loss
            is an unbiased estimate of it; memory does not grow with them here). ``None``: no cap.
        background_label: label value of the background.
        ignore_label: label value of pixels without a label: they get no loss and are nobody's
            neighbor (mirror padding, unlabeled frames; on partially segmented frames every pixel that
            is not a labeled cell, so the background term is masked there).
        eps: lower bound of the vector norms in the cosine (``e / max(|e|, eps)``); a zero embedding
            has cosine 0 to everything and a finite gradient.
        seed: seed of a private ``torch.Generator`` for the instance draw; ``None`` uses the global
            RNG. The generator can also be passed to :meth:`forward` or set as ``self.generator``.

    Shapes:
        embeddings: ``(B, T, D, H, W)`` (clips) or ``(B, D, H, W)`` (still images), any float dtype
            (computed internally in float32, or float64 for float64 input; autocast is disabled inside).
        labels: integer ``(B, T, H, W)`` / ``(B, H, W)``, or with a singleton channel ``(B, T, 1, H, W)`` /
            ``(B, 1, H, W)``. Instance ids are arbitrary integers, consistent over the frames of a clip.
        ignore_mask: optional bool tensor of the labels' shape, ``True`` = ignore (as ``ignore_label``).
        output: a scalar: mean over the samples having at least one labeled pixel of the mean over
            their instances of ``L_i``; ``0`` with a gradient path (``embeddings.sum() * 0``) when no pixel
            is labeled.

    After each call ``self.last_instances`` holds, per sample, the label values that got a loss term.
    """

    def __init__(
        self,
        neighbor_radius: float | None = None,
        neighbor_rule: str = "disc",
        max_instances: int | None = 32,
        background_label: int = 0,
        ignore_label: int = IGNORE_LABEL,
        eps: float = 1e-8,
        seed: int | None = None,
        neighbour_radius: float | None = None,
        neighbour_rule: str | None = None,
    ) -> None:
        super().__init__()
        # the British spellings of earlier versions, kept as deprecated aliases (a warning names the new one)
        neighbor_radius = renamed(neighbour_radius, neighbor_radius, "neighbour_radius", "neighbor_radius")
        neighbor_rule = renamed(neighbour_rule, neighbor_rule, "neighbour_rule", "neighbor_rule")
        if neighbor_rule not in NEIGHBOR_RULES:
            raise ValueError(f"neighbor_rule must be one of {NEIGHBOR_RULES}, got {neighbor_rule!r}")
        if neighbor_radius is not None and not neighbor_radius >= 0:
            raise ValueError(f"neighbor_radius must be >= 0 or None, got {neighbor_radius}")
        if max_instances is not None and max_instances < 1:
            raise ValueError(f"max_instances must be >= 1 or None, got {max_instances}")
        if background_label == ignore_label:
            raise ValueError("background_label and ignore_label must differ")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.neighbor_radius = None if neighbor_radius is None else float(neighbor_radius)
        self.neighbor_rule = neighbor_rule
        self.max_instances = max_instances
        self.background_label = int(background_label)
        self.ignore_label = int(ignore_label)
        self.eps = float(eps)
        self.generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        self.last_instances: list[torch.Tensor] = []

    # ------------------------------------------------------------------ shapes
    @staticmethod
    def _as_clip(
        embeddings: torch.Tensor, labels: torch.Tensor, ignore_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if embeddings.ndim not in (4, 5):
            raise ValueError(f"embeddings must be (B, T, D, H, W) or (B, D, H, W), got {tuple(embeddings.shape)}")
        still = embeddings.ndim == 4
        emb = embeddings.unsqueeze(1) if still else embeddings
        b, t, _, h, w = emb.shape

        def fit(x: torch.Tensor, name: str) -> torch.Tensor:
            if x.ndim == embeddings.ndim:  # singleton channel
                x = x.squeeze(1 if still else 2)
            if still:
                x = x.unsqueeze(1)
            if tuple(x.shape) != (b, t, h, w):
                raise ValueError(f"{name} shape does not fit embeddings {tuple(embeddings.shape)}")
            return x

        return emb, fit(labels, "labels"), None if ignore_mask is None else fit(ignore_mask, "ignore_mask")

    # ------------------------------------------------------------------ instance draw
    def _select(
        self, sample: torch.Tensor, value: torch.Tensor, batch: int, generator: torch.Generator | None
    ) -> list[list[int]]:
        """Per sample, the compact label ids that get a term: background first, then foreground (drawn)."""
        sample_l, value_l = sample.tolist(), value.tolist()
        per: list[list[int]] = [[] for _ in range(batch)]
        fg: list[list[int]] = [[] for _ in range(batch)]
        for k, (s, v) in enumerate(zip(sample_l, value_l)):
            (per if v == self.background_label else fg)[s].append(k)
        for s in range(batch):
            ids = fg[s]
            if self.max_instances is not None and len(ids) > self.max_instances:
                pick = torch.randperm(len(ids), generator=generator)[: self.max_instances]
                ids = [ids[i] for i in sorted(pick.tolist())]
            per[s].extend(ids)
        return per

    # ------------------------------------------------------------------ neighbors (label only)
    def _disc_regions(self, center: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Bool ``(S, H*W)``: the pixels in the closed disc of radius ``r_N`` around each center ``(S, 2)``."""
        r = float(self.neighbor_radius)  # type: ignore[arg-type]
        ys = torch.arange(h, device=center.device, dtype=center.dtype)
        xs = torch.arange(w, device=center.device, dtype=center.dtype)
        dy2 = (ys[None, :] - center[:, :1]) ** 2  # (S, H)
        dx2 = (xs[None, :] - center[:, 1:]) ** 2  # (S, W)
        return ((dy2[:, :, None] + dx2[:, None, :]) <= r * r).reshape(-1, h * w)

    def _dilated_regions(self, footprint: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Bool ``(S, H*W)``: each footprint ``(S, H*W)`` dilated by a Euclidean disc of radius ``r_N``."""
        r = float(self.neighbor_radius)  # type: ignore[arg-type]
        dev = footprint.device
        if r >= math.hypot(h - 1, w - 1):  # the whole image, whatever the footprint
            return torch.ones(footprint.shape[0], h * w, dtype=torch.bool, device=dev)
        rad = int(math.floor(r))
        hf, wf = _fast_fft_size(h + 2 * rad), _fast_fft_size(w + 2 * rad)  # linear, not circular, convolution
        off = torch.arange(-rad, rad + 1, device=dev)
        disc = (off[:, None] ** 2 + off[None, :] ** 2).double() <= r * r
        kern = torch.zeros(hf, wf, dtype=torch.float32, device=dev)
        iy, ix = torch.meshgrid(off % hf, off % wf, indexing="ij")
        kern[iy[disc], ix[disc]] = 1.0
        # float32 is exact enough: counts <= (2r+1)^2, and the threshold is 0.5
        img = torch.zeros(footprint.shape[0], hf, wf, dtype=torch.float32, device=dev)
        img[:, :h, :w] = footprint.reshape(-1, h, w).to(torch.float32)
        conv = torch.fft.irfft2(torch.fft.rfft2(img) * torch.fft.rfft2(kern), s=(hf, wf))
        return (conv[:, :h, :w] > 0.5).reshape(-1, h * w)

    def _neighbors(
        self,
        targets: list[list[int]],
        lab_sample: torch.Tensor,
        cid: torch.Tensor,
        shape: tuple[int, int, int, int],
        is_bg: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Target ids, samples and slots ``(I,)`` each, and the neighbor indicator ``(K, I)``.

        ``cid`` is ``(B*T, H*W)``: the compact label id of every pixel, ``K`` for unlabeled pixels.
        ``nbr[j, i]`` is True when the pixels of label ``j`` belong to ``N_i``.
        """
        b, t, h, w = shape
        k = lab_sample.numel()
        dev = cid.device
        n_slot = max(len(x) for x in targets)
        slots = torch.full((b, n_slot), -1, dtype=torch.long)
        for s, ids in enumerate(targets):
            slots[s, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        slots = slots.to(dev)
        used = slots >= 0
        tgt = slots[used]  # (I,) grouped by sample
        tgt_sample = torch.arange(b, device=dev)[:, None].expand(b, n_slot)[used]
        tgt_slot = torch.arange(n_slot, device=dev)[None, :].expand(b, n_slot)[used]
        labels_k = torch.arange(k, device=dev)
        nbr = (lab_sample[:, None] == tgt_sample[None, :]) & (labels_k[:, None] != tgt[None, :])
        if self.neighbor_radius is None:
            return tgt, tgt_sample, tgt_slot, nbr

        hw = h * w
        # footprints: which (label, position) pairs occur in some frame of the clip
        yx = torch.arange(hw, device=dev)
        presence = torch.zeros((k + 1) * hw, dtype=torch.bool, device=dev)
        presence[(cid * hw + yx).view(-1)] = True
        presence = presence[: k * hw]
        slot_ids = slots.clamp_min(0).view(-1)
        if self.neighbor_rule == "disc":
            # per-frame centers of mass, averaged over the frames where the label exists
            key = (cid * t + torch.arange(b * t, device=dev)[:, None] % t).view(-1)
            ys = (yx // w).to(torch.float64).expand(b * t, hw).reshape(-1)
            xs = (yx % w).to(torch.float64).expand(b * t, hw).reshape(-1)
            size = (k + 1) * t
            cnt = torch.bincount(key, minlength=size)[: k * t].view(k, t).to(torch.float64)
            cy = torch.bincount(key, weights=ys, minlength=size)[: k * t].view(k, t) / cnt.clamp_min(1)
            cx = torch.bincount(key, weights=xs, minlength=size)[: k * t].view(k, t) / cnt.clamp_min(1)
            frames = (cnt > 0).sum(1).clamp_min(1)
            center = torch.stack([cy.sum(1) / frames, cx.sum(1) / frames], 1)  # (K, 2) in pixels (y, x)
            region = self._disc_regions(center[slot_ids], h, w)
        else:
            region = self._dilated_regions(presence.view(k, hw)[slot_ids], h, w)
        region = region.view(b, n_slot, hw).transpose(1, 2)  # (B, HW, S)
        fp = presence.nonzero().squeeze(1)
        fj = fp // hw
        hit_m = region[lab_sample[fj], fp % hw]  # (M, S): footprint pixel of label j inside slot's region
        hit = torch.zeros(k, n_slot, dtype=torch.int32, device=dev).index_add_(0, fj, hit_m.to(torch.int32)) > 0
        near = hit[:, tgt_slot] | is_bg[tgt][None, :]  # the background target has everybody as neighbor
        return tgt, tgt_sample, tgt_slot, nbr & near

    def _compact_labels(
        self, lab: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Compact ids ``(B, N)`` (``K`` where invalid), and per id: sample, label value, pixel count."""
        b = lab.shape[0]
        dev = lab.device
        big = torch.iinfo(torch.int64).max
        lmin = int(torch.where(valid, lab, big).min())
        span = int(torch.where(valid, lab, -big).max()) - lmin + 1
        key = lab - lmin + torch.arange(b, device=dev)[:, None] * span
        if b * span <= max(4 * lab.numel(), 1 << 16):  # look-up table, no sort
            key = torch.where(valid, key, b * span)
            counts = torch.bincount(key.view(-1), minlength=b * span + 1)[:-1]
            present = counts > 0
            uniq = present.nonzero().squeeze(1)
            k = uniq.numel()
            lut = torch.full((b * span + 1,), k, dtype=torch.long, device=dev)
            lut[uniq] = torch.arange(k, device=dev)
            cid = lut[key]
            counts = counts[uniq]
        else:  # huge id range: sort
            uniq, inverse, counts = torch.unique(key[valid], return_inverse=True, return_counts=True)
            cid = torch.full_like(key, uniq.numel())
            cid[valid] = inverse
        return cid, uniq // span, uniq % span + lmin, counts

    # ------------------------------------------------------------------ loss
    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ignore_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Loss of one output (see the class docstring for shapes); ``generator`` overrides ``self.generator``."""
        emb, lab, ign = self._as_clip(embeddings, labels, ignore_mask)
        b, t, d, h, w = emb.shape
        dev = emb.device
        dtype = torch.float64 if emb.dtype == torch.float64 else torch.float32
        generator = self.generator if generator is None else generator
        with torch.autocast(device_type=dev.type, enabled=False):
            lab = lab.reshape(b, t * h * w).long()
            valid = lab != self.ignore_label
            if ign is not None:
                valid &= ~ign.reshape(b, t * h * w).bool()
            if not bool(valid.any()):
                self.last_instances = [lab.new_zeros(0) for _ in range(b)]
                return embeddings.sum().to(dtype) * 0.0
            cid, lab_sample, lab_value, counts = self._compact_labels(lab, valid)
            k = counts.numel()
            cid = cid.view(b * t, h * w)
            is_bg = lab_value == self.background_label

            targets = self._select(lab_sample.cpu(), lab_value.cpu(), b, generator)
            self.last_instances = [lab_value[ids].detach().cpu() for ids in targets]
            tgt, tgt_sample, tgt_slot, nbr = self._neighbors(targets, lab_sample, cid, (b, t, h, w), is_bg)
            n_slot = int(tgt_slot.max()) + 1

            # mean embedding of every target over all frames of its clip
            ev = emb.reshape(b * t, d, h * w).to(dtype)
            e_sum = _LabelSum.apply(ev, cid, k)  # (K+1, D)
            n = counts.to(dtype)
            mean = e_sum[tgt] / n[tgt, None]
            m = mean / torch.linalg.vector_norm(mean, dim=1, keepdim=True).clamp_min(self.eps)  # (I, D)
            m_slots = torch.zeros(b, n_slot, d, dtype=dtype, device=dev).index_put((tgt_sample, tgt_slot), m)

            # per-(label, slot) weights of cos (own instance) and cos^2 (neighbors), batch mean folded in
            n_tgt = torch.bincount(tgt_sample, minlength=b).to(dtype)
            weight = 1.0 / (n_tgt[tgt_sample] * float((n_tgt > 0).sum()))  # (I,)
            nbr_w = nbr.to(dtype)
            den = nbr_w.T @ n  # |N_i|
            table = torch.zeros(k + 1, 2 * n_slot, dtype=dtype, device=dev)
            table[tgt, tgt_slot] = -weight / n[tgt]
            coef = torch.where(den > 0, weight / den.clamp_min(1), torch.zeros_like(den))
            table[:k, n_slot:].index_add_(1, tgt_slot, nbr_w * coef[None, :])
            chunks = _pixel_chunks([f // t for f in range(b * t)], h * w, _CHUNK_PIXELS)
            return 1.0 + _WeightedCosineSum.apply(ev, m_slots, table, cid, chunks, self.eps)


def _fast_fft_size(n: int) -> int:
    """Smallest integer >= n whose prime factors are 2, 3 and 5 (fast FFT lengths)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


class _LabelSum(torch.autograd.Function):
    """Per-label sums ``(K+1, D)`` of ``ev (F, D, P)`` over the pixels with ``cid (F, P)`` (frame by frame)."""

    @staticmethod
    def forward(ctx, ev, cid, k):
        out = ev.new_zeros(ev.shape[1], k + 1)
        for f in range(ev.shape[0]):
            out.index_add_(1, cid[f], ev[f])
        ctx.save_for_backward(cid)
        return out.T

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (cid,) = ctx.saved_tensors
        g = grad.T.contiguous()  # (D, K+1)
        g_ev = g.new_empty(cid.shape[0], g.shape[0], cid.shape[1])
        for f in range(cid.shape[0]):
            torch.index_select(g, 1, cid[f], out=g_ev[f])
        return g_ev, None, None


def _pixel_chunks(frame_sample: list[int], pixels: int, max_pixels: int) -> list[tuple[int, int, int, int]]:
    """Pieces ``(frame, start, stop, sample)`` of at most ``max_pixels`` pixels of each frame."""
    step = max(1, min(pixels, max_pixels))
    return [(f, p, min(p + step, pixels), s) for f, s in enumerate(frame_sample) for p in range(0, pixels, step)]


class _WeightedCosineSum(torch.autograd.Function):
    """``sum_{f, p, s} A[c, s] cos(m[b_f, s], e[f, :, p]) + B[c, s] cos(...) ** 2`` with ``c = cid[f, p]``.

    ``ev (F, D, P)`` embeddings of ``F`` frames; ``m (B, S, D)`` unit slot directions of each sample;
    ``table (K+1, 2S)`` holds ``A`` then ``B`` (row ``K``: unlabeled pixels, zero); ``cid (F, P)``;
    ``chunks`` pieces of frames (see :func:`_pixel_chunks`). Evaluated piece by piece (cache-sized); the
    backward recomputes the cosines, so only one piece's ``(pixels, S)`` matrices exist at a time.
    Differentiable once, in ``ev`` and ``m``.
    """

    @staticmethod
    def _chunk(ev, m, table, cid, eps, chunk):
        f, p0, p1, sample = chunk
        e = ev[f, :, p0:p1]  # (D, P)
        mf = m[sample]  # (S, D)
        sq = (e * e).sum(0)  # (P,) squared norms (vector_norm over dim 0 is slow on CPU)
        inv = sq.clamp_min(max(eps * eps, torch.finfo(sq.dtype).tiny)).rsqrt_()  # 1 / max(|e|, eps)
        u = e * inv  # (D, P) unit vectors (or e / eps where |e| <= eps)
        cos = u.T @ mf.T  # (P, S)
        ab = table.index_select(0, cid[f, p0:p1])  # (P, 2S)
        s = mf.shape[0]
        return mf, sq, inv, u, cos, ab[:, :s], ab[:, s:]

    @staticmethod
    def forward(ctx, ev, m, table, cid, chunks, eps):
        total = ev.new_zeros(())
        for chunk in chunks:
            _, _, _, _, cos, a, b = _WeightedCosineSum._chunk(ev, m, table, cid, eps, chunk)
            total = total + torch.dot(torch.addcmul(a, b, cos).view(-1), cos.view(-1))
        ctx.save_for_backward(ev, m, table, cid)
        ctx.chunks, ctx.eps = chunks, eps
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        ev, m, table, cid = ctx.saved_tensors
        g_ev = torch.empty_like(ev)
        g_m = torch.zeros_like(m)
        with torch.autocast(device_type=ev.device.type, enabled=False):
            table = table * grad
            for chunk in ctx.chunks:
                mf, sq, inv, u, cos, a, b = _WeightedCosineSum._chunk(ev, m, table, cid, ctx.eps, chunk)
                g_cos = torch.addcmul(a, b, cos, value=2.0)  # (P, S)
                g_m[chunk[3]] += g_cos.T @ u.T
                g_u = mf.T @ g_cos.T  # (D, P)
                # u = e / max(|e|, eps): d u / d e = (I - u u^T) / |e| where |e| > eps, I / eps elsewhere
                radial = (u * g_u).sum(0) * (sq > ctx.eps * ctx.eps)
                g_ev[chunk[0], :, chunk[1] : chunk[2]] = torch.addcmul(g_u, u, radial, value=-1.0).mul_(inv)
        return g_ev, g_m, None, None, None, None
