"""Architecture families (neurosearch.spaces): registry, spaces, sampling, building,
shapes, causality, depth, export and a tiny learning check, with real torch and Optuna.

Every test parametrised over FAMILIES runs for a newly added family automatically."""

from __future__ import annotations

import json
import math
import pkgutil
import sys
import textwrap
import warnings

import optuna
import pytest
import torch
import torch.nn.functional as F
from optuna.distributions import CategoricalDistribution
from pydantic import ValidationError

import neurosearch.spaces as spaces_pkg
from neurosearch.spaces import FAMILIES, Family, InputMeta, discover_families, get_family, n_params

optuna.logging.set_verbosity(optuna.logging.WARNING)

N_IN = 24
META = InputMeta(N_IN, tuple(i % 4 for i in range(N_IN)))  # 24 inputs on 4 branches
T = 200
T0 = 150  # the time step probed by the causality checks
NAMES = sorted(FAMILIES)
BUILTIN = {"tcn", "mlp", "deep_unit", "elm"}


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one intra-op thread is as fast and does not fight other
    processes for a small machine's cores (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class CornerSampler(optuna.samplers.BaseSampler):
    """Samples an extreme of every parameter, so a family's own ``sample`` produces the
    corners of its space. mode "low": smallest number / first choice; "high": largest /
    last; an int k: the k-th choice (cyclic) and, for numbers, low when k is even."""

    def __init__(self, mode: str | int) -> None:
        self.mode = mode

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, name, dist):
        if isinstance(dist, CategoricalDistribution):
            choices = list(dist.choices)
            numeric = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)
            if self.mode == "low":
                return min(choices) if numeric else choices[0]
            if self.mode == "high":
                return max(choices) if numeric else choices[-1]
            return choices[self.mode % len(choices)]
        high = self.mode == "high" or (isinstance(self.mode, int) and self.mode % 2 == 1)
        return dist.high if high else dist.low


def sample_spec(family: Family, depth: int, mode="low", space=None) -> tuple[dict, dict]:
    """(spec, trial params) from the family's own sample() under a CornerSampler."""
    study = optuna.create_study(sampler=CornerSampler(mode))
    trial = study.ask()
    spec = family.sample(trial, space if space is not None else family.Space(), depth)
    return spec, dict(trial.params)


def build(family: Family, spec: dict, inputs: InputMeta = META, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return family.build(spec, inputs)


def spikes(*shape, p=0.1, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < p).float()


def corners(name: str) -> list[tuple[int, str | int]]:
    """(depth, sampler mode) pairs covering min/max depth x low/high, and every choice of
    every categorical at both depths."""
    space = FAMILIES[name].Space()
    longest = max([len(v) for k, v in space.model_dump().items() if isinstance(v, list) and k != "depths"] + [2])
    depths = sorted({min(space.depths), max(space.depths)})
    return [(d, m) for d in depths for m in ["low", "high", *range(1, longest)]]


CORNERS = [pytest.param(n, d, m, id=f"{n}-d{d}-{m}") for n in NAMES for d, m in corners(n)]


def forward(model, x):
    with torch.no_grad():
        s, v = model(x)
    return s, v


# ----------------------------------------------------------------------------- registry


def test_registry_finds_the_builtin_families():
    assert BUILTIN <= set(FAMILIES)
    for name, family in FAMILIES.items():
        assert isinstance(family, Family) and family.name == name
        assert get_family(name) is family
    # every module of the package that defines FAMILY is registered, under its name
    for info in pkgutil.iter_modules(spaces_pkg.__path__, spaces_pkg.__name__ + "."):
        module = sys.modules.get(info.name) or __import__(info.name, fromlist=["_"])
        if hasattr(module, "FAMILY") and not info.name.rsplit(".", 1)[-1].startswith("_"):
            assert FAMILIES[module.FAMILY.name] is module.FAMILY


def test_get_family_unknown_names_the_known_ones():
    with pytest.raises(KeyError) as err:
        get_family("nope")
    for name in FAMILIES:
        assert name in str(err.value)


def _package(tmp_path, name: str, files: dict[str, str]) -> str:
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for fname, text in files.items():
        (pkg / fname).write_text(textwrap.dedent(text))
    return name


@pytest.fixture
def scratch_packages(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    made = []
    yield lambda name, files: made.append(_package(tmp_path, name, files)) or name
    for key in [k for k in sys.modules if any(k == m or k.startswith(m + ".") for m in made)]:
        del sys.modules[key]


def test_discovery_picks_up_a_dropped_in_module(scratch_packages):
    pkg = scratch_packages("nsx_dropin", {
        "toy.py": """
            from neurosearch.spaces.tcn import TCN
            class Toy(TCN):
                name = "toy"
            FAMILY = Toy()
        """,
        "helpers.py": "X = 1\n",  # no FAMILY: ignored
        "_private.py": "from neurosearch.spaces.tcn import FAMILY\n",  # private: skipped
    })
    found = discover_families(pkg)
    assert list(found) == ["toy"] and found["toy"].name == "toy"


def test_discovery_rejects_non_families_and_duplicates(scratch_packages):
    with pytest.raises(TypeError, match="not a Family"):
        discover_families(scratch_packages("nsx_bad", {"bad.py": "FAMILY = 3\n"}))
    dup = "from neurosearch.spaces.tcn import TCN\nFAMILY = TCN()\n"
    with pytest.raises(ValueError, match="two families"):
        discover_families(scratch_packages("nsx_dup", {"a.py": dup, "b.py": dup}))


def test_input_meta_validates():
    with pytest.raises(ValueError):
        InputMeta(3, (0, 1))
    with pytest.raises(ValueError):
        InputMeta(0, ())
    meta = InputMeta.ungrouped(5)
    assert meta.groups == (0,) * 5 and meta.n_groups == 1
    assert META.branch_ids == (0, 1, 2, 3)


# ----------------------------------------------------------------------------- spaces


@pytest.mark.parametrize("name", NAMES)
def test_space_rejects_unknown_keys_and_bad_depths(name):
    Space = FAMILIES[name].Space
    space = Space()
    assert space.depths and all(d >= 1 for d in space.depths)
    assert Space.model_config.get("extra") == "forbid"
    for bad in ({"colour": "red"}, {"depths": [0]}, {"depths": [-1, 2]}, {"depths": []}, {"depths": "deep"}):
        with pytest.raises(ValidationError):
            Space.model_validate(bad)
    # the defaults round-trip through JSON (as they would through search.toml)
    assert Space.model_validate(json.loads(space.model_dump_json())) == space


@pytest.mark.parametrize("name", NAMES)
def test_sample_with_a_real_study(name):
    family = FAMILIES[name]
    space = family.Space()
    study = optuna.create_study()
    for depth in space.depths:
        trial = study.ask()
        spec = family.sample(trial, space, depth)
        text = json.dumps(spec)  # JSON-able
        assert json.loads(text) == spec
        assert spec["family"] == name and spec["depth"] == depth
        assert family.depth(spec) == depth
        assert trial.params and all(k.startswith(name + ".") for k in trial.params), trial.params
        study.tell(trial, 0.5)
    # a second round in the same study: the distributions stay compatible
    for depth in space.depths:
        family.sample(study.ask(), space, depth)


# ----------------------------------------------------------------------------- corners


@pytest.mark.parametrize("name,depth,mode", CORNERS)
def test_corner_builds_with_right_shapes_depth_and_causality(name, depth, mode):
    family = FAMILIES[name]
    spec, params = sample_spec(family, depth, mode)
    assert all(k.startswith(name + ".") for k in params)
    spec = json.loads(json.dumps(spec))  # build from what a database would give back
    assert family.depth(spec) == depth == spec["depth"]
    model = build(family, spec).eval()
    assert n_params(model) > 0
    check_shapes_and_causality(family, spec, model)


def check_shapes_and_causality(family: Family, spec: dict, model: torch.nn.Module) -> None:
    """Shapes, dtype, finiteness; outputs <= T0 blind to inputs after T0 but not to the
    inputs at T0; and, where stated, the receptive field exact."""
    # one batch holds the probe x and its variants (samples are independent in eval mode)
    x = spikes(2, N_IN, T)
    late = x.clone()  # changed after T0
    late[..., T0 + 1:] = spikes(2, N_IN, T - T0 - 1, p=0.5, seed=1)
    now = x.clone()  # changed at T0 only
    now[..., T0] = 1 - now[..., T0]
    rf = family.receptive_field(spec)
    old, edge = x.clone(), x.clone()
    if rf is not None:
        assert 1 <= rf <= T0
        old[..., : T0 - rf + 1] = 1 - old[..., : T0 - rf + 1]  # changed before the receptive field
        edge[..., T0 - rf + 1] = 1 - edge[..., T0 - rf + 1]  # changed at its oldest bin
    s_all, v_all = forward(model, torch.cat([x, late, now, old, edge]))
    assert s_all.shape == v_all.shape == (10, T) and s_all.dtype == v_all.dtype == torch.float32
    assert torch.isfinite(s_all).all() and torch.isfinite(v_all).all()
    (s, s2, s3, s4, s5), (v, v2, v3, v4, v5) = s_all.split(2), v_all.split(2)
    s_alone, v_alone = forward(model, x)
    assert s_alone.shape == v_alone.shape == (2, T)
    torch.testing.assert_close(s_alone, s, atol=1e-5, rtol=1e-5)

    # causal: changing inputs after T0 leaves outputs up to T0 unchanged
    torch.testing.assert_close(s2[:, :T0 + 1], s[:, :T0 + 1], atol=1e-6, rtol=0)
    torch.testing.assert_close(v2[:, :T0 + 1], v[:, :T0 + 1], atol=1e-6, rtol=0)
    # ... and outputs at T0 do depend on the inputs at T0 (the current bin)
    torch.testing.assert_close(s3[:, :T0], s[:, :T0], atol=1e-6, rtol=0)
    assert max((s3[:, T0] - s[:, T0]).abs().max(), (v3[:, T0] - v[:, T0]).abs().max()) > 1e-6
    # the stated receptive field is exact: the oldest bin in it matters, older ones do not
    if rf is not None:
        torch.testing.assert_close(s4[:, T0:], s[:, T0:], atol=1e-6, rtol=0)
        torch.testing.assert_close(v4[:, T0:], v[:, T0:], atol=1e-6, rtol=0)
        assert max((s5[:, T0] - s[:, T0]).abs().max(), (v5[:, T0] - v[:, T0]).abs().max()) > 0


@pytest.mark.parametrize("name", NAMES)
def test_causal_in_train_mode_too_unless_batch_norm(name):
    """Training mode (dropout on, same seed -> same masks) is causal as well; only batch
    normalisation, whose training statistics span the whole window, is exempt."""
    family = FAMILIES[name]
    for depth, mode in corners(name):
        spec, _ = sample_spec(family, depth, mode)
        model = build(family, spec).train()
        if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            continue
        x = spikes(2, N_IN, 80)
        late = x.clone()
        late[..., 41:] = 1 - late[..., 41:]
        torch.manual_seed(1)
        a = forward(model, x)
        torch.manual_seed(1)
        b = forward(model, late)
        for u, w in zip(a, b):
            torch.testing.assert_close(u[:, :41], w[:, :41], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_build_rejects_a_foreign_or_inconsistent_spec(name):
    family = FAMILIES[name]
    spec, _ = sample_spec(family, min(family.Space().depths), "low")
    with pytest.raises(ValueError, match="family"):
        family.build(dict(spec, family="not-" + name), META)
    with pytest.raises(ValueError, match="depth"):
        family.build(dict(spec, depth=spec["depth"] + 1), META)


@pytest.mark.parametrize("name", NAMES)
def test_train_mode_backward_reaches_every_parameter(name):
    family = FAMILIES[name]
    spec, _ = sample_spec(family, max(family.Space().depths), "high")
    model = build(family, spec).train()
    s, v = model(spikes(3, N_IN, 64))
    (s.square().mean() + v.square().mean()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", NAMES)
def test_any_length_works(name):
    family = FAMILIES[name]
    spec, _ = sample_spec(family, min(family.Space().depths), 1)
    model = build(family, spec).eval()
    for t in (1, 7):
        s, v = forward(model, spikes(2, N_IN, t))
        assert s.shape == v.shape == (2, t)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_given_the_seed(name):
    family = FAMILIES[name]
    spec, _ = sample_spec(family, max(family.Space().depths), 2)
    a, b = build(family, spec, seed=3).eval(), build(family, spec, seed=3).eval()
    x = spikes(2, N_IN, 50)
    for ta, tb in zip(forward(a, x), forward(b, x)):
        assert torch.equal(ta, tb)
    c = build(family, spec, seed=4).eval()
    assert not torch.equal(forward(a, x)[0], forward(c, x)[0])


@pytest.mark.parametrize("name", NAMES)
def test_cpu_autocast_bf16(name):
    family = FAMILIES[name]
    spec, _ = sample_spec(family, max(family.Space().depths), "high")
    model = build(family, spec).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        s, v = model(spikes(2, N_IN, 40))
    assert s.shape == v.shape == (2, 40)
    assert torch.isfinite(s.float()).all() and torch.isfinite(v.float()).all()


@pytest.mark.parametrize("name", NAMES)
def test_jit_trace(name):
    family = FAMILIES[name]
    spec, _ = sample_spec(family, max(family.Space().depths), 1)
    model = build(family, spec).eval()
    x = spikes(2, N_IN, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (x,), check_trace=False)
    for a, b in zip(traced(x), forward(model, x)):
        torch.testing.assert_close(a, b)
    if family.receptive_field(spec) is not None:  # feed-forward: the trace is length-generic
        y = spikes(3, N_IN, 70, seed=5)
        for a, b in zip(traced(y), forward(model, y)):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_export(name, tmp_path):
    """torch.export (what the dynamo ONNX exporter builds on) and ONNX through the
    TorchScript exporter, checked with onnxruntime when installed. Feed-forward families
    export with dynamic batch and length; recurrent ones (receptive field None) unroll the
    recurrence at a fixed length. (The dynamo ONNX translation costs ~3 s a model, too
    slow for this suite; run ``torch.onnx.export(program, f, dynamo=True)`` by hand.)"""
    family = FAMILIES[name]
    spec, _ = sample_spec(family, max(family.Space().depths), 2)
    model = build(family, spec).eval()
    feedforward = family.receptive_field(spec) is not None
    x = spikes(2, N_IN, 40 if feedforward else 6)
    y = spikes(3, N_IN, 70, seed=5) if feedforward else spikes(2, N_IN, 6, seed=5)
    expected = forward(model, y)
    dims = ({0: torch.export.Dim("B", min=1, max=256), 2: torch.export.Dim("T", min=2, max=100_000)},)
    program = torch.export.export(model, (x,), dynamic_shapes=dims if feedforward else None)
    for a, b in zip(program.module()(y), expected):
        torch.testing.assert_close(a, b)

    pytest.importorskip("onnx")
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"],
                          output_names=["spike_logit", "voltage"],
                          dynamic_axes={"x": {0: "B", 2: "T"}} if feedforward else None)
    assert path.stat().st_size > 0
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for a, b in zip(session.run(None, {"x": y.numpy()}), expected):
        torch.testing.assert_close(torch.from_numpy(a), b, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_and_autocast(name):
    family = FAMILIES[name]
    spec, _ = sample_spec(family, max(family.Space().depths), "high")
    model = build(family, spec).eval()
    x = spikes(2, N_IN, 60)
    ref = forward(model, x)
    model, xc = model.cuda(), x.cuda()
    for a, b in zip(forward(model, xc), ref):
        torch.testing.assert_close(a.cpu(), b, atol=1e-3, rtol=1e-3)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        s, v = model(xc)
    assert torch.isfinite(s.float()).all() and torch.isfinite(v.float()).all()


# ----------------------------------------------------------------------------- learning


@pytest.mark.parametrize("name", NAMES)
def test_learns_a_toy_causal_target(name):
    """A few dozen Adam steps on 'spike when input 0 spiked 2 ms ago' beat the best
    constant prediction (so the network uses its input, not just its biases)."""
    family = FAMILIES[name]
    spec, _ = sample_spec(family, min(family.Space().depths), "low")
    model = build(family, spec).train()
    x = spikes(8, N_IN, 100, p=0.15, seed=7)
    x[:, 0] = spikes(8, 100, p=0.3, seed=8)
    target = F.pad(x[:, 0], (2, 0))[:, :-2]  # input 0, two bins ago
    volt = target + 0.5 * F.pad(x[:, 0], (3, 0))[:, :-3]
    volt = (volt - volt.mean()) / volt.std()

    def loss_fn():
        s, v = model(x)
        return F.binary_cross_entropy_with_logits(s, target) + F.mse_loss(v, volt)

    rate = target.mean()
    constant = F.binary_cross_entropy(rate.expand_as(target), target) + volt.var(unbiased=False)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    first = loss_fn().item()
    for _ in range(40):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    last = loss_fn().item()
    assert last < first and last < 0.8 * constant.item(), (first, last, constant.item())


# ----------------------------------------------------------------------------- per family


def test_tcn_paper_reference_net_is_buildable():
    """The published 7 x 128 TCN (first kernel 54, then 24) on 2556 inputs: ~20 M parameters."""
    family = get_family("tcn")
    space = family.Space.model_validate({
        "depths": [7], "widths": [128], "first_kernel": [54, 54], "kernel": [24, 24],
        "dilation_growth": [1], "residual": [False], "norm": ["batch"], "activation": ["relu"],
    })
    spec = family.sample(optuna.create_study().ask(), space, 7)
    assert spec["kernels"] == [54] + [24] * 6 and spec["dilations"] == [1] * 7 and spec["width"] == 128
    assert family.depth(spec) == 7 and family.receptive_field(spec) == 1 + 53 + 6 * 23
    model = build(family, spec, InputMeta.ungrouped(2556)).eval()
    assert 19.9e6 < n_params(model) < 20.2e6
    s, v = forward(model, spikes(1, 2556, 30, p=0.02))
    assert s.shape == v.shape == (1, 30)


def test_tcn_residual_only_where_shapes_allow():
    family = get_family("tcn")
    spec, _ = sample_spec(family, 3, "high")
    assert spec["residual"] is True
    model = build(family, spec)
    assert [b.residual for b in model.blocks] == [False, True, True]
    assert spec["dilations"] == [1, 1, 2]


def test_mlp_filter_bank_adds_no_depth():
    family = get_family("mlp")
    spec, _ = sample_spec(family, 2, "low")
    assert family.depth(spec) == len(spec["hidden"]) == 2
    assert family.receptive_field(spec) == spec["window"]
    per_input = build(family, dict(spec, filter_bank="per_input"))
    shared = build(family, dict(spec, filter_bank="shared"))
    k, w = spec["filters"], spec["window"]
    assert n_params(per_input) - n_params(shared) == (N_IN - 1) * k * w


def test_deep_unit_space_rejects_unrealisable_depths():
    Space = get_family("deep_unit").Space
    with pytest.raises(ValidationError, match="cannot be realised"):
        Space(depths=[5])  # 5 = 5 x 1 = 1 x 5, but unit/inner layers only go to 3
    with pytest.raises(ValidationError):
        Space(depths=[1, 4], unit_layers=[2], inner_layers=[2])
    assert Space(depths=[6, 9]).depths == [6, 9]


def test_deep_unit_sample_hits_every_factorisation_exactly():
    family = get_family("deep_unit")
    space = family.Space(depths=[1, 2, 3, 4, 6, 9])
    for depth in space.depths:
        options = set(space.factorisations(depth))
        seen = set()
        for mode in range(len(options)):
            spec, _ = sample_spec(family, depth, mode, space)
            assert family.depth(spec) == depth == spec["unit_layers"] * spec["inner_layers"]
            seen.add((spec["unit_layers"], spec["inner_layers"]))
            check_shapes_and_causality(family, spec, build(family, spec).eval())
        assert seen == options, depth


def test_deep_unit_branch_units_see_only_their_own_inputs():
    family = get_family("deep_unit")
    meta = InputMeta(10, (7, 7, 3, 9, 9, 9, 9, 9, 9, 3))  # unequal branches: 2, 2, 6 inputs
    spec, _ = sample_spec(family, 1, "low")
    assert spec["grouping"] == "branch"
    model = build(family, spec, meta).eval()
    width, k = spec["inner_width"], spec["first_kernel"]
    assert n_params(model) == 10 * width * k + 3 * width + (3 * width * 2 + 2)  # exact, no padding
    filt = model.layers[0][0]
    x = spikes(1, 10, 40, p=0.3)
    y = filt(x)
    x2 = x.clone()
    x2[:, [0, 1, 3, 4, 5, 6, 7, 8]] = 1 - x2[:, [0, 1, 3, 4, 5, 6, 7, 8]]  # all but branch 3 (unit 0)
    y2 = filt(x2)
    torch.testing.assert_close(y2[:, :width], y[:, :width])  # unit 0 (branch id 3) unchanged
    assert not torch.allclose(y2[:, width:], y[:, width:])


def test_deep_unit_random_grouping_is_seeded():
    from neurosearch.spaces.deep_unit import unit_assignment

    spec = {"grouping": "random", "group_size": 5, "group_seed": 0}
    a = unit_assignment(spec, META)
    assert a == unit_assignment(spec, META)
    assert sorted(a) == sorted([u for u in range(5) for _ in range(5)][:N_IN])
    assert a != unit_assignment(dict(spec, group_seed=1), META)


def test_elm_timescales_and_depth():
    family = get_family("elm")
    spec, params = sample_spec(family, 1, "high")
    assert family.depth(spec) == 1 and spec["hidden"] == [] and "elm.width" not in params
    assert family.receptive_field(spec) is None
    model = build(family, spec)
    tau = model.log_tau_m.exp()
    assert math.isclose(tau.min().item(), spec["tau_min"], rel_tol=1e-4)
    assert math.isclose(tau.max().item(), spec["tau_max"], rel_tol=1e-4)
    with pytest.raises(ValidationError):
        family.Space(tau_min=(1.0, 100.0), tau_max=(50.0, 500.0))
    spec3, _ = sample_spec(family, 3, "low")
    assert family.depth(spec3) == 3 and len(spec3["hidden"]) == 2
