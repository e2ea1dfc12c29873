"""Contrastive views: change the input, keep shapes, reproducible with a seeded generator."""

import pytest
import torch

from mlsupcon.data.views import FeatureMaskNoise, ImageViews, TokenViews, make_views

CLS, SEP, MASK, PAD = 101, 102, 103, 0


def _batch():
    ids = torch.tensor(
        [
            [CLS] + list(range(1000, 1020)) + [SEP, PAD, PAD],
            [CLS, 2000, 2001, 2002, SEP, 3000, 3001, SEP] + [PAD] * 16,
            [CLS, 4000, SEP] + [PAD] * 21,
        ]
    )
    return ids, (ids != PAD).long()


def _tv(**kw):
    return TokenViews(mask_token_id=MASK, pad_token_id=PAD, special_ids={CLS, SEP}, **kw)


def test_token_views_shape_change_and_determinism():
    ids, am = _batch()
    tv = _tv(p_drop=0.2, p_mask=0.2, crop=0.8)
    a = tv(ids, am, torch.Generator().manual_seed(0))
    b = tv(ids, am, torch.Generator().manual_seed(0))
    c = tv(ids, am, torch.Generator().manual_seed(1))
    assert a[0].shape == ids.shape and a[1].shape == am.shape and a[1].dtype == am.dtype
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], ids) and not torch.equal(a[0], c[0])
    (v1, m1), (v2, m2) = tv.pair(ids, am, torch.Generator().manual_seed(2))
    assert not torch.equal(v1, v2)


def test_token_views_respect_specials_and_pads():
    ids, am = _batch()
    tv = _tv(p_drop=0.3, p_mask=0.5, crop=0.5)
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        out, m = tv(ids, am, g)
        assert (out[:, 0] == CLS).all()
        for r in range(ids.shape[0]):
            # specials survive, in order; content never exceeds the original; pads only after content
            assert (out[r] == SEP).sum() == (ids[r] == SEP).sum()
            n = int(m[r].sum())
            assert (out[r, n:] == PAD).all() and (m[r, n:] == 0).all() and (m[r, :n] == 1).all()
            content = [t for t in out[r, :n].tolist() if t not in (CLS, SEP)]
            assert len(content) >= 1  # at least one content token is kept
            orig = [t for t in ids[r].tolist() if t not in (CLS, SEP, PAD)]
            kept = [t for t in content if t != MASK]
            assert all(t in orig for t in kept)
            idx = [orig.index(t) for t in kept]
            assert idx == sorted(idx)  # order preserved
    # A one-token document keeps its token (maybe masked) and its specials
    out, m = _tv(p_drop=0.9, p_mask=0.0, crop=0.1)(ids, am, torch.Generator().manual_seed(0))
    assert out[2, :3].tolist() == [CLS, 4000, SEP]


def test_token_views_identity_settings_and_errors():
    ids, am = _batch()
    out, m = _tv(p_drop=0.0, p_mask=0.0, crop=1.0)(ids, am, torch.Generator().manual_seed(0))
    assert torch.equal(out, ids) and torch.equal(m, am)
    with pytest.raises(ValueError, match="p_drop"):
        _tv(p_drop=1.5)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        _tv()(ids[0], am[0])


def test_token_views_from_tokenizer():
    class Tok:
        mask_token_id, pad_token_id, all_special_ids = MASK, PAD, [CLS, SEP, PAD, MASK]

    tv = TokenViews.from_tokenizer(Tok(), p_mask=0.3)
    assert tv.mask_token_id == MASK and tv.special_ids == [PAD, CLS, SEP, MASK] and tv.p_mask == 0.3
    assert isinstance(make_views("text", tokenizer=Tok()), TokenViews)


def test_feature_mask_noise():
    x = torch.randn(16, 103)
    v = FeatureMaskNoise()
    assert (v.p_mask, v.noise_std) == (0.5, 0.1)
    a = v(x, torch.Generator().manual_seed(0))
    b = v(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, x)
    mask_only = FeatureMaskNoise(p_mask=0.5, noise_std=0.0)(x, torch.Generator().manual_seed(0))
    zero_frac = (mask_only == 0).float().mean().item()
    assert 0.4 < zero_frac < 0.6
    assert torch.equal(mask_only[mask_only != 0], x[mask_only != 0])
    with pytest.raises(ValueError, match="p_mask"):
        FeatureMaskNoise(p_mask=1.0)


def test_image_views():
    x = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    v = ImageViews(24, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    state = torch.get_rng_state()
    a = v(x, torch.Generator().manual_seed(0))
    b = v(x, torch.Generator().manual_seed(0))
    c = v(x, torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    assert a.shape == (3, 3, 24, 24)
    assert torch.equal(a, b) and not torch.equal(a, c)
    raw = ImageViews(40, scale=(1.0, 1.0), p_jitter=0.0, p_gray=0.0, p_flip=0.0)
    assert torch.allclose(raw(x, torch.Generator().manual_seed(0)), x, atol=1e-5)  # full-area crop only
    with pytest.raises(ValueError, match="float"):
        v((x * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        v(x[:, :1])


def test_make_views_factory():
    assert isinstance(make_views("vector", p_mask=0.3), FeatureMaskNoise)
    assert isinstance(make_views("image", size=8), ImageViews)
    assert isinstance(make_views("text", mask_token_id=MASK, pad_token_id=PAD), TokenViews)
    with pytest.raises(ValueError, match=r"unknown modality 'audio'; valid choices: text, vector, image"):
        make_views("audio")
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'p'.*valid options: p_mask, noise_std"):
        make_views("vector", p=0.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_views_on_cuda_with_cpu_generator():
    ids, am = _batch()
    tv = _tv(p_drop=0.2, p_mask=0.2, crop=0.8)
    a = tv(ids.cuda(), am.cuda(), torch.Generator().manual_seed(0))
    b = tv(ids, am, torch.Generator().manual_seed(0))
    assert torch.equal(a[0].cpu(), b[0]) and torch.equal(a[1].cpu(), b[1])
    x = torch.randn(4, 10)
    fa = FeatureMaskNoise()(x.cuda(), torch.Generator().manual_seed(0))
    fb = FeatureMaskNoise()(x, torch.Generator().manual_seed(0))
    assert torch.allclose(fa.cpu(), fb)
    img = torch.rand(2, 3, 20, 20)
    ia = ImageViews(16)(img.cuda(), torch.Generator().manual_seed(0))
    ib = ImageViews(16)(img.cuda(), torch.Generator().manual_seed(0))
    assert ia.is_cuda and torch.equal(ia, ib)
