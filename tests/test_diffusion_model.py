"""Diffusion family: the UNet's interface, the DDPM schedule and samplers, pruning and ONNX export of the UNet."""
import copy

import numpy as np
import onnxruntime as ort
import pytest
import torch

from pipeline_lib.export.onnx_export import export_onnx
from pipeline_lib.profile import count_params
from pipeline_lib.slimming import apply_mask, plan_prune, prune_model
from pipeline_lib.tasks.diffusion.model import DiffusionUNet
from pipeline_lib.tasks.diffusion.schedule import (NoiseSchedule, ddim_sample, ddim_timesteps, ddpm_sample,
                                                   training_loss)

from conftest import randomize_bn

SMALL = dict(base=8, time_dim=32, context_dim=16, attn_dim=16)  # the layout of the default, a fraction of the cost


def small_unet(seed: int = 0, **kw) -> DiffusionUNet:
    torch.manual_seed(seed)
    return DiffusionUNet(**{**SMALL, **kw})


def inputs(batch: int, size: int, seed: int = 0, T: int = 1000):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 1, size, size, generator=g), torch.randint(0, T, (batch,), generator=g) / T,
            torch.randint(0, 10, (batch,), generator=g))


def oracle(x0: torch.Tensor, schedule: NoiseSchedule, record: list | None = None):
    """The exact ε of x_t for a known x0: x_t = √ᾱ_t x0 + √(1-ᾱ_t) ε."""
    def model(x, time, labels):
        t = (time * schedule.T).round().long()  # the network reads step / T (schedule.network_time)
        eps = (x - schedule.sqrt_alphas_cumprod[t].view(-1, 1, 1, 1) * x0) / \
            schedule.sqrt_one_minus_alphas_cumprod[t].view(-1, 1, 1, 1)
        if record is not None:
            record.append((int(t[0]), x.clone(), eps.clone()))
        return eps
    return model


@pytest.mark.parametrize("size", [28, 16])
def test_unet_output_shape_and_every_input_matters(size):
    model = DiffusionUNet() if size == 28 else small_unet(mults=[1, 2, 2], attn_levels=[1, 2])  # lists accepted
    model = randomize_bn(model)
    x, t, label = inputs(2, size)
    with torch.no_grad():
        eps = model(x, t, label)
        assert eps.shape == x.shape and eps.dtype == torch.float32
        assert not torch.allclose(model(x, (t + 100) % 1000, label), eps, atol=1e-4)  # the timestep is read
        assert not torch.allclose(model(x, t, (label + 1) % 10), eps, atol=1e-4)  # so is the class, via attention
        assert not torch.allclose(model(x.flip(-1), t, label), eps, atol=1e-4)
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.zeros(1, 1, 30, 30), t[:1], label[:1])


def test_keep_width_modules_are_the_fixed_width_layers():
    model = small_unet()
    keep = model.keep_width_modules()
    names = {m: n for n, m in model.named_modules()}
    kept = sorted(names[m] for m in keep)
    assert {"time_mlp.0", "time_mlp.2", "label_embed", "out", "mid_attn.wq", "mid_attn.wk", "mid_attn.wv"} <= set(kept)
    assert not any(n.endswith((".temb", ".wo")) for n in kept)
    assert sum(n.endswith(".wq") for n in kept) == 5  # down levels 1, 2, the middle, up levels 2, 1


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_closed_form_q_sample_equals_the_step_by_step_chain(kind):
    schedule = NoiseSchedule(T=1000, kind=kind)
    # Analytic composition: x_t = √α_t x_{t-1} + √β_t n_t has mean coefficient Π√α_s
    # and variance α_t v_{t-1} + β_t.
    betas = schedule.betas.double()
    mean, var = torch.ones((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    means, variances = [], []
    for b in betas:
        mean, var = mean * (1 - b).sqrt(), (1 - b) * var + b
        means.append(mean)
        variances.append(var)
    assert torch.allclose(torch.stack(means).float(), schedule.sqrt_alphas_cumprod, rtol=1e-4, atol=1e-6)
    assert torch.allclose(torch.stack(variances).float(), schedule.sqrt_one_minus_alphas_cumprod ** 2,
                          rtol=1e-4, atol=1e-6)
    assert (schedule.posterior_variance[1:] <= schedule.betas[1:] + 1e-7).all() and schedule.posterior_variance[0] == 0

    # In distribution: many chains from one x0 against q_sample at a few t.
    n, x0, g = 20000, torch.tensor([0.8, -0.5]), torch.Generator().manual_seed(1)
    x, stepped = x0.expand(n, 2).clone(), {}
    checkpoints = {0, 20, 200, 600, 999}
    for t, b in enumerate(schedule.betas.tolist()):
        x = (1 - b) ** 0.5 * x + b ** 0.5 * torch.randn(n, 2, generator=g)
        if t in checkpoints:
            stepped[t] = x.clone()
    for t in sorted(checkpoints):
        ts = torch.full((n,), t)
        closed = schedule.q_sample(x0.expand(n, 2), ts, torch.randn(n, 2, generator=g))
        v = float(1 - schedule.alphas_cumprod[t])
        assert (stepped[t].mean(0) - closed.mean(0)).abs().max() < 6 * (2 * v / n) ** 0.5
        assert (stepped[t].var(0) - closed.var(0)).abs().max() < 6 * v * (4 / n) ** 0.5


def test_cosine_schedule_is_clipped_and_monotone():
    s = NoiseSchedule(T=50, kind="cosine")
    assert float(s.betas.max()) == pytest.approx(0.999) and (s.betas > 0).all()
    assert (s.alphas_cumprod[1:] < s.alphas_cumprod[:-1]).all()
    with pytest.raises(ValueError, match="kind"):
        NoiseSchedule(kind="sigmoid")


def test_training_loss_is_seeded_and_zero_for_the_true_noise():
    schedule = NoiseSchedule(T=100)
    x0 = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    labels = torch.arange(6)
    loss = training_loss(oracle(x0, schedule), x0, labels, schedule, torch.Generator().manual_seed(3))
    assert float(loss) < 1e-4  # q_sample and the oracle agree on the noise
    model = small_unet().eval()
    x0 = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a, b, c = (training_loss(model, x0, labels, schedule, torch.Generator().manual_seed(s)) for s in (5, 5, 6))
    assert a.shape == () and a.requires_grad and bool(a == b) and bool(a != c) and 0.3 < float(a.detach()) < 3


def test_samplers_same_seed_same_samples():
    model = randomize_bn(small_unet())
    schedule, labels, shape = NoiseSchedule(T=20), torch.tensor([1, 7]), (2, 1, 16, 16)
    calls = []
    runs = {
        "ddpm": lambda seed: ddpm_sample(model, labels, schedule, shape, torch.Generator().manual_seed(seed),
                                         progress=lambda i, n: calls.append((i, n))),
        "ddim": lambda seed: ddim_sample(model, labels, schedule, shape, torch.Generator().manual_seed(seed), steps=5),
        "ddim-eta": lambda seed: ddim_sample(model, labels, schedule, shape, torch.Generator().manual_seed(seed),
                                             steps=5, eta=0.5),
    }
    for name, run in runs.items():
        a, b, c = run(0), run(0), run(1)
        assert a.shape == shape and a.min() >= -1 and a.max() <= 1, name
        assert torch.equal(a, b), name
        assert not torch.allclose(a, c), name
    assert calls[:20] == [(i, 20) for i in range(1, 21)]
    assert ddim_timesteps(1000, 50)[:2] == [999, 979] and ddim_timesteps(1000, 50)[-1] == 0
    assert ddim_timesteps(20, 20) == list(range(19, -1, -1))


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_with_an_exact_noise_oracle_recovers_x0(eta):
    schedule = NoiseSchedule(T=200, kind="linear")
    x0 = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 1.8 - 0.9
    record = []
    out = ddim_sample(oracle(x0, schedule, record), torch.zeros(3, dtype=torch.int64), schedule, x0.shape,
                      torch.Generator().manual_seed(2), steps=10, eta=eta)
    assert [t for t, _, _ in record] == ddim_timesteps(200, 10)
    assert torch.allclose(out, x0, atol=1e-4)
    if eta == 0:  # deterministic DDIM keeps the noise direction: x_s = √ᾱ_s x0 + √(1-ᾱ_s) ε at every step
        for _, _, eps in record[1:]:
            assert torch.allclose(eps, record[0][2], atol=1e-4)


def test_ddpm_with_an_exact_noise_oracle_follows_the_forward_marginals():
    # With the true ε, each DDPM step draws from the posterior q(x_{t-1} | x_t, x0), so x_t ~ N(√ᾱ_t x0, 1-ᾱ_t).
    schedule = NoiseSchedule(T=50, kind="cosine")
    n, x0 = 4000, torch.tensor([0.6, -0.3, 0.0, 0.9]).view(1, 1, 2, 2)
    record = []
    out = ddpm_sample(oracle(x0, schedule, record), torch.zeros(n, dtype=torch.int64), schedule, (n, 1, 2, 2),
                      torch.Generator().manual_seed(4))
    assert torch.allclose(out, x0.expand(n, 1, 2, 2), atol=1e-3)
    for t, x, _ in record:
        if t in (10, 25, 40):
            v = float(1 - schedule.alphas_cumprod[t])
            assert (x.mean(0) - schedule.sqrt_alphas_cumprod[t] * x0[0]).abs().max() < 5 * (v / n) ** 0.5, t
            assert (x.var(0) / v - 1).abs().max() < 5 * (2 / n) ** 0.5, t


def out_width(m: torch.nn.Module) -> int:
    return m.weight.shape[0] if not isinstance(m, torch.nn.Embedding) else m.embedding_dim


def test_masked_and_pruned_unet_agree_and_skips_shrink():
    model = randomize_bn(small_unet(), seed=1)
    with torch.no_grad():  # real running statistics, as after training
        model.train()
        for seed in range(3):
            model(*inputs(8, 16, seed))
    model.eval()
    example = inputs(2, 16, seed=9)
    with pytest.warns(UserWarning):  # min_channels=4 clamps a few 8-channel groups
        plan = plan_prune(model, example, ratio=0.3, min_channels=4, keep=model.keep_width_modules(),
                          on_infeasible="clamp")
    assert plan.achieved_ratio > 0.2
    masked = apply_mask(copy.deepcopy(model), plan)
    kept_widths = [out_width(m) for m in model.keep_width_modules()]
    widths = [m.bn2.num_features for m in model.down]
    up_in = [m.conv1.in_channels for m in model.up]
    before = count_params(model)
    prune_model(model, example, plan)
    assert count_params(model) < 0.8 * before
    x = inputs(3, 16, seed=10)
    with torch.no_grad():
        assert torch.allclose(masked(*x), model(*x), atol=1e-5, rtol=0)
    # A down block whose output is a skip lost channels, and the up block concatenating it reads fewer.
    shrunk = [i for i, m in enumerate(model.down) if m.bn2.num_features < widths[i]]
    assert shrunk
    for i in shrunk:
        up = model.up[len(model.down) - 1 - i]
        assert up.conv1.in_channels < up_in[len(model.down) - 1 - i]
    assert [out_width(m) for m in model.keep_width_modules()] == kept_widths


def test_onnx_export_matches_pytorch(tmp_path):
    model = randomize_bn(small_unet(mults=(1, 2), attn_levels=(1,)))  # two levels: every op kind, half the export time
    path = tmp_path / "unet.onnx"
    export_onnx(model, inputs(1, 16), path, input_names=("x_t", "t", "label"), output_names=("eps",))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x_t", "t", "label"]
    x, t, label = inputs(3, 16, seed=5)  # another batch size than traced: the batch is dynamic
    got = session.run(None, {"x_t": x.numpy(), "t": t.numpy(), "label": label.numpy()})[0]
    with torch.no_grad():
        ref = model(x, t, label).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_int8_keeps_the_time_and_label_embeddings_float(tmp_path):
    """t·1000 through one uint8 scale steps by ~4 timesteps (measured: output error 0.68 on the
    trained UNet, 0.055 with these nodes float); the image path is quantized as before."""
    import onnx

    from pipeline_lib.export.quantize import conditioning_nodes, quantize_int8

    model = randomize_bn(small_unet(mults=(1, 2), attn_levels=(1,)))
    fp32, int8 = tmp_path / "unet.onnx", tmp_path / "unet.int8.onnx"
    export_onnx(model, inputs(1, 16), fp32, input_names=("x_t", "t", "label"), output_names=("eps",))
    graph = onnx.load(str(fp32)).graph
    kept = set(conditioning_nodes(onnx.load(str(fp32))))
    by_op = {op: {n.name for n in graph.node if n.op_type == op} for op in ("Sin", "Cos", "Gather", "Conv")}
    assert by_op["Sin"] | by_op["Cos"] | by_op["Gather"] <= kept and not by_op["Conv"] & kept
    batches = [tuple(v.numpy() for v in inputs(1, 16, seed=k)) for k in range(4)]
    report = quantize_int8(fp32, int8, batches)
    assert report["float_conditioning_nodes"] > 0
    quantized = onnx.load(str(int8)).graph
    produced_by = {out: n.op_type for n in quantized.node for out in n.output}
    embedding = [n for n in quantized.node if n.op_type in ("Sin", "Cos", "Gather")]
    assert embedding and all(produced_by.get(i) != "DequantizeLinear" for n in embedding for i in n.input)
    assert any(n.op_type == "DequantizeLinear" for n in quantized.node)  # the convolutions are int8


def test_lora_on_the_attention_projections_merges_into_the_same_network():
    from pipeline_lib.adapters.lora import LoRALayer, inject, merge

    model, x = randomize_bn(small_unet()).eval(), inputs(2, 16)
    with torch.no_grad():
        before = model(*x)
    names = inject(model, r=2, alpha=4, targets=["*.wq", "*.wk", "*.wv"], fixed=model.keep_width_modules())
    assert names and {n.rsplit(".", 1)[1] for n in names} == {"wq", "wk", "wv"}  # the seed's Wq, Wk, Wv only
    for layer in (m for m in model.modules() if isinstance(m, LoRALayer)):
        torch.nn.init.normal_(layer.lora_B.weight, std=0.1)  # as after training
    with torch.no_grad():
        adapted = model(*x)
        merged = merge(model)(*x)
    assert not torch.allclose(adapted, before, atol=1e-4)  # the adapters change the output ...
    assert not any(isinstance(m, LoRALayer) for m in model.modules())  # ... and merge into plain layers
    torch.testing.assert_close(merged, adapted, rtol=1e-5, atol=1e-5)
