"""Tests for derain_utils.nets.models: shapes, identity at init, learning, Swin masks, cost counts, errors."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from derain_utils.nets import models
from derain_utils.nets.models import (
    ARCHS,
    MODEL_SIZES,
    SwinBlock,
    build_model,
    count_flops,
    count_params,
    model_kwargs,
    pad_to_multiple,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: one intra-op thread is as fast and immune to CPU oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _seeded(arch: str, seed: int = 0, **kw) -> models.DerainNet:
    torch.manual_seed(seed)
    return build_model(arch, **kw)


def _toy_pair(n: int = 4, c: int = 3, s: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(background, rainy): smooth random backgrounds plus sparse vertical 7-px streaks of 0.6."""
    g = torch.Generator().manual_seed(seed)
    background = F.interpolate(torch.rand(n, c, 4, 4, generator=g), size=(s, s), mode="bilinear", align_corners=False)
    seeds = (torch.rand(n, 1, s, s, generator=g) < 0.02).float()
    rain = F.conv2d(seeds, torch.ones(1, 1, 7, 1), padding=(3, 0)).clamp(max=1.0) * 0.6
    return background, (background + rain).clamp(0.0, 1.0)


# --------------------------------------------------------------------------- registry / sizes


def test_registry_and_sizes_are_complete():
    assert set(ARCHS) == {"resnet", "unet", "swinir", "prenet"}
    for arch in ARCHS:
        assert set(MODEL_SIZES[arch]) == {"tiny", "quick", "paper"}
        for size in MODEL_SIZES[arch]:
            m = build_model(arch, size=size)
            for k, v in model_kwargs(arch, size).items():
                assert m.config[k] == (tuple(v) if isinstance(v, list) else v)


def test_defaults_are_the_quick_size():
    for arch in ARCHS:
        assert build_model(arch).config == build_model(arch, size="quick").config
    assert model_kwargs("resnet", "quick")["depth"] == 8 and model_kwargs("resnet", "quick")["width"] == 32


def test_model_kwargs_returns_a_copy():
    kw = model_kwargs("resnet", "quick")
    kw["depth"] = 99
    assert MODEL_SIZES["resnet"]["quick"]["depth"] == 8


def test_size_plus_override():
    m = build_model("swinir", size="tiny", window_size=4)
    assert m.config["window_size"] == 4 and m.config["embed_dim"] == MODEL_SIZES["swinir"]["tiny"]["embed_dim"]


def test_config_rebuilds_the_same_architecture_including_via_json():
    for arch in ARCHS:
        m = _seeded(arch, size="tiny", in_channels=1)
        clone = build_model(**json.loads(json.dumps(m.config)))  # tuples become lists in JSON
        clone.load_state_dict(m.state_dict(), strict=True)
        x = torch.rand(1, 1, 19, 23)
        assert torch.equal(clone(x), m(x))


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("in_channels", [3, 1])
@pytest.mark.parametrize("hw", [(32, 32), (37, 50), (16, 9), (3, 5)])
def test_forward_preserves_shape(arch, in_channels, hw):
    m = _seeded(arch, size="tiny", in_channels=in_channels)
    x = torch.rand(2, in_channels, *hw)
    y = m(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("kw", [{"down": "stride"}, {"up": "transpose"}, {"levels": 0}, {"levels": 3}])
def test_unet_variants_preserve_shape(kw):
    m = _seeded("unet", size="tiny", **kw)
    x = torch.rand(2, 3, 37, 50)
    assert m(x).shape == x.shape


def test_resnet_residual_block_variant():
    m = _seeded("resnet", depth=6, width=8, block="residual")
    assert sum(isinstance(b, models._ResBlock) for b in m.body) == 2
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert len(convs) == 6
    x = torch.rand(2, 3, 21, 17)
    assert m(x).shape == x.shape


def test_pad_to_multiple_reflects_and_falls_back_to_replicate():
    x = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 4, 5)
    y = pad_to_multiple(x, 4)
    assert y.shape == (1, 1, 4, 8)
    assert y[0, 0, 0].tolist() == [0, 1, 2, 3, 4, 3, 2, 1]  # reflect
    z = pad_to_multiple(torch.ones(1, 1, 2, 3), 8)  # too small to reflect
    assert z.shape == (1, 1, 8, 8) and torch.equal(z, torch.ones_like(z))
    x4 = x[..., :4]
    assert pad_to_multiple(x4, 4) is x4  # already a multiple: untouched


def test_wrong_input_channels_is_a_named_error():
    m = build_model("resnet", size="tiny", in_channels=1)
    with pytest.raises(ValueError, match="rainy"):
        m(torch.rand(1, 3, 8, 8))


# --------------------------------------------------------------------------- init


@pytest.mark.parametrize("arch", ARCHS)
def test_init_is_deterministic_under_manual_seed(arch):
    a, b, c = _seeded(arch, 0, size="tiny"), _seeded(arch, 0, size="tiny"), _seeded(arch, 1, size="tiny")
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", ["tiny", "quick", "paper"])
def test_near_identity_at_init(arch, size):
    m = _seeded(arch, size=size)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        d = (m(x) - x).abs()
    assert d.mean() < 0.02 and d.max() < 0.1
    assert d.max() > 0  # small, not zero: every layer receives gradient from step 0


@pytest.mark.parametrize("arch", ARCHS)
def test_tail_scale_zero_is_exact_identity(arch):
    m = _seeded(arch, size="tiny", tail_scale=0.0)
    x = torch.rand(2, 3, 20, 24)
    assert torch.equal(m(x), x)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_parameter_gets_a_gradient(arch):
    m = _seeded(arch, size="tiny")
    clean, rainy = _toy_pair(n=2, s=16)
    F.mse_loss(m(rainy), clean).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# --------------------------------------------------------------------------- predict


def test_forward_is_not_clamped_but_predict_is():
    m = _seeded("resnet", size="tiny")
    with torch.no_grad():
        m.tail.bias.fill_(-2.0)  # residual = -2  ->  derained = rainy + 2
    x = torch.rand(1, 3, 8, 8)
    assert m(x).min() > 1.5
    m.train()
    y = m.predict(x)
    assert torch.equal(y, torch.ones_like(y))
    assert not y.requires_grad and m.training  # mode restored


# --------------------------------------------------------------------------- learning


@pytest.mark.parametrize("arch", ARCHS)
def test_overfits_one_tiny_batch(arch):
    torch.manual_seed(0)
    m = build_model(arch, size="tiny")
    clean, rainy = _toy_pair()
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    losses = []
    for _ in range(60):
        loss = F.mse_loss(m(rainy), clean)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # at init the loss is the rain energy (near-identity); it must fall by more than half
    assert losses[0] == pytest.approx(F.mse_loss(rainy, clean).item(), rel=0.1)
    assert losses[-1] < 0.5 * losses[0], losses[::10]


# --------------------------------------------------------------------------- predict = "background"


@pytest.mark.parametrize("arch", ARCHS)
def test_background_prediction_outputs_the_network_directly(arch):
    rain_m = _seeded(arch, size="tiny")
    bg_m = _seeded(arch, size="tiny", predict="background")
    assert rain_m.predicts == "rain" and bg_m.predicts == "background" and bg_m.config["predict"] == "background"
    assert models.count_params(bg_m) == models.count_params(rain_m)  # same architecture, other output
    x = torch.rand(2, 3, 20, 24)
    with torch.no_grad():
        assert torch.equal(bg_m(x), bg_m.residual(x))  # no global residual
        assert torch.equal(rain_m(x), x - rain_m.residual(x))
        # identity-like init: the rain model returns the input, the background model a flat mid-grey image
        assert (bg_m(x) - 0.5).abs().max() < 0.1 and (rain_m(x) - x).abs().max() < 0.1
    exact = _seeded(arch, size="tiny", predict="background", tail_scale=0.0)
    assert torch.equal(exact(x), torch.full_like(x, 0.5))
    clone = build_model(**json.loads(json.dumps(bg_m.config)))
    assert clone.predicts == "background"


@pytest.mark.parametrize("arch", ["resnet", "unet"])
def test_a_background_predicting_model_trains(arch):
    torch.manual_seed(0)
    m = build_model(arch, size="tiny", predict="background")
    clean, rainy = _toy_pair()
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    losses = []
    for _ in range(60):
        loss = F.mse_loss(m(rainy), clean)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # at init the output is mid-grey: the loss is the backgrounds' spread around 0.5, far above the rain's
    assert losses[0] == pytest.approx(F.mse_loss(torch.full_like(clean, 0.5), clean).item(), rel=0.2)
    assert losses[-1] < 0.3 * losses[0], losses[::10]


def test_predict_must_be_rain_or_background():
    with pytest.raises(ValueError, match="predict"):
        build_model("resnet", size="tiny", predict="residual")
    assert models.PREDICT == ("rain", "background")


# --------------------------------------------------------------------------- swin machinery


def test_window_partition_round_trip_and_order():
    x = torch.arange(2 * 8 * 12 * 3, dtype=torch.float32).view(2, 8, 12, 3)
    w = window_partition(x, 4)
    assert w.shape == (2 * 2 * 3, 16, 3)
    assert torch.equal(w[1], x[0, 0:4, 4:8].reshape(16, 3))  # second window of the first row
    assert torch.equal(window_reverse(w, 4, 8, 12), x)


def test_relative_position_index_known_answers():
    ws = 3
    idx = relative_position_index(ws)
    assert idx.shape == (9, 9)
    center = (ws - 1) * (2 * ws - 1) + (ws - 1)
    assert torch.all(idx.diagonal() == center)
    assert idx[0, 8] == 0  # offset (-2, -2)
    assert idx[8, 0] == (2 * ws - 1) ** 2 - 1  # offset (+2, +2)
    assert idx.unique().numel() == (2 * ws - 1) ** 2


def test_shifted_window_mask_known_regions():
    # 8x8 map, 4x4 windows, shift 2: window 0 is one region; window 1 (top right) and
    # window 2 (bottom left) are split in two halves of 8; window 3 in four quarters of 4.
    mask = shifted_window_mask(8, 8, 4, 2)
    allowed = (~mask).sum(-1)
    assert mask.shape == (4, 16, 16) and mask.dtype == torch.bool
    assert torch.all(allowed[0] == 16)
    assert torch.all(allowed[1] == 8) and torch.all(allowed[2] == 8)
    assert torch.all(allowed[3] == 4)
    # window 3, token (0,0) may see (0,1),(1,0),(1,1) and not (0,2) -- the wrapped column
    assert not mask[3, 0, 1] and not mask[3, 0, 4] and not mask[3, 0, 5] and mask[3, 0, 2]
    assert torch.equal(mask, mask.transpose(1, 2))
    assert not shifted_window_mask(8, 8, 4, 0).any()


def _naive_window_attention(block: SwinBlock, x: torch.Tensor) -> torch.Tensor:
    """Full (non-windowed) attention over all tokens with the shifted-window partition as a mask.

    Token (i, j) may attend to (i', j') iff floor((i - s)/ws) == floor((i' - s)/ws) and
    likewise for columns: the shifted windows in image coordinates, border strips split.
    """
    attn, ws, s = block.attn, block.window_size, block.shift
    b, h, w, c = x.shape
    n_tok, nh = h * w, attn.num_heads
    q, k, v = attn.qkv(x.reshape(b, n_tok, c)).view(b, n_tok, 3, nh, c // nh).permute(2, 0, 3, 1, 4)
    logits = (q * attn.scale) @ k.transpose(-2, -1)  # (b, nh, L, L)
    i = torch.arange(h).repeat_interleave(w)
    j = torch.arange(w).repeat(h)
    bi, bj = torch.div(i - s, ws, rounding_mode="floor"), torch.div(j - s, ws, rounding_mode="floor")
    same = (bi[:, None] == bi[None]) & (bj[:, None] == bj[None])
    di = (i[:, None] - i[None] + ws - 1).clamp(0, 2 * ws - 2)
    dj = (j[:, None] - j[None] + ws - 1).clamp(0, 2 * ws - 2)
    bias = attn.relative_position_bias_table[di * (2 * ws - 1) + dj].permute(2, 0, 1)  # (nh, L, L)
    logits = (logits + bias).masked_fill(~same, float("-inf"))
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n_tok, c)
    return attn.proj(out).view(b, h, w, c)


@pytest.mark.parametrize("shift", [0, 4])
@pytest.mark.parametrize("hw", [(16, 16), (16, 24)])
def test_window_attention_matches_naive_reference(shift, hw):
    torch.manual_seed(0)
    block = SwinBlock(dim=12, num_heads=3, window_size=8, shift=shift, mlp_ratio=2.0)
    x = torch.randn(2, *hw, 12)
    with torch.no_grad():
        fast, naive = block.attend(x), _naive_window_attention(block, x)
    torch.testing.assert_close(fast, naive, rtol=1e-5, atol=1e-5)


def test_shifted_attention_does_not_leak_across_the_wrapped_boundary(monkeypatch):
    torch.manual_seed(0)
    ws, s, h = 8, 4, 16
    block = SwinBlock(dim=8, num_heads=2, window_size=ws, shift=s, mlp_ratio=2.0)
    x = torch.randn(1, h, h, 8)
    x2 = x.clone()
    x2[:, :s] += 10.0  # perturb the top strip; after the roll it shares windows with the bottom strip
    with torch.no_grad():
        d = (block.attend(x2) - block.attend(x)).abs().amax(dim=(0, 2, 3))  # per row
    assert torch.all(d[h - ws + s :] == 0)  # bottom strip: same rolled window, other region
    assert torch.all(d[:s] > 0)
    # the test is sensitive: without the mask, the perturbation leaks to the bottom strip
    monkeypatch.setattr(block, "_mask", lambda *a: None)
    with torch.no_grad():
        d_nomask = (block.attend(x2) - block.attend(x)).abs().amax(dim=(0, 2, 3))
    assert torch.all(d_nomask[h - ws + s :] > 0)


def test_swinir_alternates_shifts_and_accepts_int_heads():
    m = build_model("swinir", embed_dim=12, depths=(3, 2), num_heads=3)
    assert m.config["num_heads"] == (3, 3)
    shifts = [[blk.shift for blk in g.blocks] for g in m.groups]
    assert shifts == [[0, 4, 0], [0, 4]]


# --------------------------------------------------------------------------- cost


def test_count_params_resnet_known_answer():
    c, d, w = 3, 8, 32
    expected = (9 * c * w + w) + (d - 2) * (9 * w * w + w) + (9 * w * c + c)
    assert count_params(build_model("resnet", depth=d, width=w)) == expected
    m = build_model("resnet", depth=d, width=w)
    m.tail.weight.requires_grad_(False)
    assert count_params(m) == expected - 9 * w * c


def test_count_params_and_flops_grow_with_width():
    pairs = {"resnet": "width", "unet": "base_width", "swinir": "embed_dim"}
    for arch, key in pairs.items():
        small, big = build_model(arch, **{key: 8}), build_model(arch, **{key: 16})
        assert 0 < count_params(small) < count_params(big), arch
        assert 0 < count_flops(small, 32) < count_flops(big, 32), arch
    for arch in ARCHS:
        tiny, quick, paper = (count_params(build_model(arch, size=s)) for s in ("tiny", "quick", "paper"))
        assert tiny < quick <= paper or (arch == "unet" and tiny == quick), arch  # UNet: tiny is quick (models.py)
        assert quick < paper or arch == "prenet"  # PReNet is published in one size: quick is paper


@pytest.mark.parametrize("hw", [(64, 64), (37, 50)])
def test_count_flops_resnet_equals_analytic_conv_sum(hw):
    h, w = hw
    m = build_model("resnet", depth=8, width=32)
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    expected = sum(2 * h * w * 9 * cv.in_channels * cv.out_channels for cv in convs)
    assert count_flops(m, (h, w)) == expected
    assert count_flops(m, (h, w), batch=3) == 3 * expected


def test_count_flops_unet_equals_analytic_conv_sum():
    c, b0, hp, wp = 3, 16, 40, 52  # 37x50 is padded to multiples of 4
    w = [b0, 2 * b0, 4 * b0]
    area = [hp * wp, hp * wp // 4, hp * wp // 16]
    macs = 9 * (c * w[0] + w[0] * w[0]) * area[0]  # in-conv
    macs += sum(9 * (w[i] * w[i + 1] + w[i + 1] ** 2) * area[i + 1] for i in range(2))  # encoder
    macs += sum(9 * ((w[i + 1] + w[i]) * w[i] + w[i] ** 2) * area[i] for i in range(2))  # decoder
    macs += w[0] * c * area[0]  # 1x1 tail
    m = build_model("unet", levels=2, base_width=b0)
    assert count_flops(m, (37, 50)) == 2 * macs
    assert count_flops(m, (37, 50)) == count_flops(m, (hp, wp))


def test_count_flops_swinir_equals_analytic_sum():
    c, e, ws, mlp = 3, 24, 8, 2.0
    depths = (2, 2)
    hp, wp = 40, 56  # 37x50 padded to multiples of the window
    n_pix, n_win_tok = hp * wp, ws * ws
    hidden = int(round(e * mlp))
    convs = 9 * (c * e + len(depths) * e * e + e * e + e * c)
    per_block = 3 * e * e + e * e + 2 * e * hidden + 2 * n_win_tok * e  # qkv, proj, mlp, QK^T and AV
    expected = 2 * n_pix * (convs + sum(depths) * per_block)
    m = build_model("swinir", embed_dim=e, depths=depths, num_heads=(2, 2), window_size=ws, mlp_ratio=mlp)
    assert count_flops(m, (37, 50)) == expected


def test_count_flops_restores_mode_and_checks_size():
    m = build_model("resnet", size="tiny")
    m.train()
    count_flops(m, 16)
    assert m.training
    for bad in (0, -3, (8,), (8, 0), 2.5, True):
        with pytest.raises(ValueError, match="size"):
            count_flops(m, bad)
    with pytest.raises(ValueError, match="batch"):
        count_flops(m, 16, batch=0)


def test_models_table():
    df = models.models_table(sizes=("tiny",), image_size=32)
    assert list(df["arch"]) == list(ARCHS)
    assert (df["params"] > 0).all() and (df["gflops@32px"] > 0).all()


# --------------------------------------------------------------------------- errors


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="resnet.*unet.*swinir"):
        build_model("dncnn")


def test_unknown_kwarg_names_it_and_the_arch():
    with pytest.raises(ValueError, match=r"'window_size'.*'resnet'"):
        build_model("resnet", window_size=8)
    with pytest.raises(ValueError, match="'blocks'.*'swinir'"):
        build_model("swinir", blocks=3)


def test_unknown_size_is_named():
    with pytest.raises(ValueError, match="size 'huge'"):
        build_model("unet", size="huge")
    with pytest.raises(ValueError, match="arch 'vit'"):
        model_kwargs("vit", "tiny")


@pytest.mark.parametrize(
    "arch, kw, word",
    [
        ("resnet", {"depth": 1}, "depth"),
        ("resnet", {"depth": 7, "block": "residual"}, "depth"),
        ("resnet", {"width": 0}, "width"),
        ("resnet", {"block": "dense"}, "block"),
        ("resnet", {"tail_scale": -1.0}, "tail_scale"),
        ("resnet", {"in_channels": 0}, "in_channels"),
        ("unet", {"levels": -1}, "levels"),
        ("unet", {"base_width": 2.5}, "base_width"),
        ("unet", {"down": "avgpool"}, "down"),
        ("unet", {"up": "nearest"}, "up"),
        ("swinir", {"window_size": 7}, "window_size"),
        ("swinir", {"embed_dim": 10, "num_heads": (3, 3)}, "embed_dim"),
        ("swinir", {"depths": (2, 2), "num_heads": (2,)}, "num_heads"),
        ("swinir", {"depths": ()}, "depths"),
        ("swinir", {"depths": (2, 0)}, "depths"),
        ("swinir", {"mlp_ratio": 0}, "mlp_ratio"),
        ("prenet", {"stages": 0}, "stages"),
        ("prenet", {"blocks": -1}, "blocks"),
        ("prenet", {"width": 0}, "width"),
    ],
)
def test_bad_values_are_named(arch, kw, word):
    with pytest.raises(ValueError, match=word):
        build_model(arch, **kw)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_models_run_on_cuda_like_on_cpu():
    for arch in ARCHS:
        m = _seeded(arch, size="tiny")
        x = torch.rand(2, 3, 37, 50)
        ref = m(x)
        out = m.cuda()(x.cuda()).cpu()
        torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-4)


# --------------------------------------------------------------------------- PReNet


def test_prenet_has_the_published_keys_shapes_and_size():
    """PROVENANCE.md of checkpoints_prenet: T = 6, 32 channels, 168,963 parameters, these names and shapes."""
    m = build_model("prenet")
    assert count_params(m) == 168_963 and m.config["stages"] == 6
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes["conv0.0.weight"] == (32, 6, 3, 3) and shapes["conv.0.weight"] == (3, 32, 3, 3)
    for k in range(1, 6):
        assert shapes[f"res_conv{k}.0.weight"] == shapes[f"res_conv{k}.2.weight"] == (32, 32, 3, 3)
    for gate in "ifgo":
        assert shapes[f"conv_{gate}.0.weight"] == (32, 64, 3, 3) and shapes[f"conv_{gate}.0.bias"] == (32,)
    assert len(shapes) == 2 * (1 + 10 + 4 + 1)


def _prenet_by_hand(m: models.PReNetDerain, y: torch.Tensor) -> torch.Tensor:
    """The paper's recurrence written out with the model's own layers (an independent reading)."""
    conv = lambda seq, t: F.conv2d(t, seq[0].weight, seq[0].bias, padding=1)  # noqa: E731
    x, h, c = y, None, None
    for _ in range(m.config["stages"]):
        f0 = torch.relu(conv(m.conv0, torch.cat([y, x], 1)))
        h = torch.zeros_like(f0) if h is None else h
        c = torch.zeros_like(f0) if c is None else c
        z = torch.cat([f0, h], 1)
        i, f, g, o = (torch.sigmoid(conv(m.conv_i, z)), torch.sigmoid(conv(m.conv_f, z)),
                      torch.tanh(conv(m.conv_g, z)), torch.sigmoid(conv(m.conv_o, z)))
        c = f * c + i * g
        h = o * torch.tanh(c)
        r = h
        for k in range(1, m.config["blocks"] + 1):
            blk = getattr(m, f"res_conv{k}")
            r = torch.relu(torch.relu(F.conv2d(torch.relu(F.conv2d(r, blk[0].weight, blk[0].bias, padding=1)),
                                               blk[2].weight, blk[2].bias, padding=1)) + r)
        x = y + conv(m.conv, r)
    return x


def test_prenet_forward_is_the_papers_recurrence():
    m = _seeded("prenet", stages=3, width=8, blocks=2, tail_scale=1.0)
    y = torch.rand(2, 3, 13, 17)
    with torch.no_grad():
        torch.testing.assert_close(m(y), _prenet_by_hand(m, y), rtol=1e-5, atol=1e-6)
        assert torch.equal(m(y), y - m.residual(y))  # the rain layer is minus the last stage's conv output
