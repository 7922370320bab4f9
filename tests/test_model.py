"""The packed transformer: parameters, addressable attention matrices, causality, run independence."""

import torch

from manifold_sweeps.model.transformer import MATRICES, ModelShape, Transformer

SHAPE = ModelShape(vocab_size=40, seq_len=12, n_classes=5, n_layers=3, n_heads=4, d_model=32)


def model(n_runs=1, seeds=None, **kw):
    shape = ModelShape(**{**SHAPE.__dict__, **kw})
    net = Transformer(shape, n_runs)
    for p, s in enumerate(seeds or range(n_runs)):
        net.init_run_(p, s)
    return net


def tokens(n_runs=1, batch=6, seed=0):
    return torch.randint(0, 40, (n_runs, batch, 12), generator=torch.Generator().manual_seed(seed))


def test_attention_only_model_has_no_mlp_parameters():
    names = [n for n, _ in model().named_parameters()]
    assert not any("mlp" in n for n in names)
    assert any("mlp" in n for n, _ in model(mlp_ratio=4).named_parameters())


def test_attention_matrices_are_d_by_d_per_run_and_layer():
    net = model(n_runs=2)
    mats = net.attention_matrices()
    assert list(mats) == [(l, name) for l in range(3) for name in MATRICES]
    for w in mats.values():
        assert w.shape == (2, 32, 32)
    assert net.blocks[1].attn.W_V[0].shape == (32, 32)


def test_initialisation_is_reproducible_per_seed():
    a, b, c = model(seeds=[3]), model(seeds=[3]), model(seeds=[4])
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.blocks[0].attn.W_Q, c.blocks[0].attn.W_Q)


def test_packed_runs_equal_the_same_runs_alone():
    packed = model(n_runs=3, seeds=[7, 8, 9])
    x = tokens(3)
    out = packed(x)
    for p, seed in enumerate([7, 8, 9]):
        alone = model(seeds=[seed])(x[p : p + 1])
        torch.testing.assert_close(out[p : p + 1], alone, rtol=1e-5, atol=1e-6)


def test_runs_in_a_pack_do_not_influence_each_other():
    a = model(n_runs=2, seeds=[1, 2])
    b = model(n_runs=2, seeds=[1, 5])  # only run 1 differs
    x = tokens(2)
    out_a, out_b = a(x), b(x)
    assert torch.equal(out_a[0], out_b[0]) and not torch.equal(out_a[1], out_b[1])
    out_a.sum().backward()
    b(x).sum().backward()
    assert torch.equal(a.blocks[0].attn.W_Q.grad[0], b.blocks[0].attn.W_Q.grad[0])


def test_readout_depends_on_every_position_but_earlier_positions_never_see_later_ones():
    net = model()
    x = tokens()
    y = x.clone()
    y[:, :, 5] = (y[:, :, 5] + 1) % 40
    assert not torch.allclose(net(x), net(y))  # the readout attends to position 5
    # Causality inside a block: the residual stream at positions < 5 ignores the change at 5.
    B = x.shape[1]
    hx, _ = net.blocks[0](net.embed(x), B)
    hy, _ = net.blocks[0](net.embed(y), B)
    hx, hy = hx.view(1, B, 12, -1), hy.view(1, B, 12, -1)
    torch.testing.assert_close(hx[:, :, :5], hy[:, :, :5])
    assert not torch.allclose(hx[:, :, 5:], hy[:, :, 5:])


def test_readout_only_last_layer_equals_the_full_computation():
    net = model(mlp_ratio=2)
    x = tokens()
    B = x.shape[1]
    h = net.embed(x)
    for block in net.blocks:
        h, _ = block(h, B)  # every position in every layer
    full = torch.nn.functional.linear(
        net.ln_f(h.view(1, B, 12, -1)[:, :, -1, :]), net.W_head[0].T, net.b_head[0]
    )
    torch.testing.assert_close(net(x), full, rtol=1e-5, atol=1e-6)


def test_readout_attention_rows_are_distributions_over_positions():
    net = model()
    logits, attns = net(tokens(), readout_attention=True)
    assert len(attns) == 3
    for a in attns:
        assert a.shape == (1, 6, 4, 12)
        torch.testing.assert_close(a.sum(-1), torch.ones(1, 6, 4))
    torch.testing.assert_close(logits, net(tokens()))


def test_fused_and_separate_qkv_projections_agree_in_outputs_and_gradients(monkeypatch):
    import manifold_sweeps.model.transformer as transformer

    x = tokens(2)
    grads = {}
    for fused_limit in (1 << 40, 0):  # fused for every size, then never
        monkeypatch.setattr(transformer, "_FRESH_PAGES_BYTES", fused_limit)
        net = model(n_runs=2, seeds=[3, 4])
        out = net(x)
        out.square().sum().backward()
        grads[fused_limit] = (out.detach(), {n: p.grad.clone() for n, p in net.named_parameters()})
    (out_a, g_a), (out_b, g_b) = grads.values()
    torch.testing.assert_close(out_a, out_b, rtol=1e-5, atol=1e-6)
    assert g_a.keys() == g_b.keys()
    for name in g_a:
        torch.testing.assert_close(g_a[name], g_b[name], rtol=1e-4, atol=1e-6, msg=name)
