"""The model zoo: shapes, identical initial weights on both backends, layer look-up (kernels that
land in bigmodel.nn are picked up with no change to the models), and option errors."""

from __future__ import annotations

import pytest
import torch

import bigmodel
from bigmodel.data import DataSpec
from bigmodel.errors import ConfigError
from bigmodel.models import MODELS, Layers, build_model, layer_report, model_config

IMAGE = DataSpec("image", "classify", (1, 28, 28), 10)
TOKENS = DataSpec("tokens", "classify", (12,), 3, vocab_size=30, pad_index=0)
LM = DataSpec("tokens", "lm", (16,), 25, vocab_size=25)

CASES = [("cnn", IMAGE), ("mlp", IMAGE), ("lstm", IMAGE), ("transformer", IMAGE), ("mlp", TOKENS),
         ("lstm", TOKENS), ("transformer", TOKENS), ("lstm", LM), ("transformer-lm", LM)]
SMALL = {"cnn": {"channels": "4,8", "hidden": 16}, "mlp": {"hidden": "16"}, "lstm": {"hidden": 12},
         "transformer": {"dim": 16, "depth": 2, "heads": 2, "mlp_dim": 32},
         "transformer-lm": {"dim": 16, "depth": 2, "heads": 2, "mlp_dim": 32}}


def _inputs(spec: DataSpec, n: int = 3) -> torch.Tensor:
    if spec.kind == "image":
        return torch.randn(n, *spec.input_shape)
    x = torch.randint(1, spec.vocab_size, (n, *spec.input_shape))
    if spec.pad_index is not None:
        x[0, :5] = spec.pad_index  # a left-padded row
    return x


@pytest.mark.parametrize("name,spec", CASES, ids=[f"{n}-{s.kind}-{s.task}" for n, s in CASES])
def test_same_seed_same_weights_on_both_backends(name, spec):
    states, outputs = [], []
    x = _inputs(spec)
    for backend in ("bigmodel", "torch"):
        torch.manual_seed(7)
        m = build_model(name, spec, SMALL[name], backend).eval()
        states.append(m.state_dict())
        with torch.no_grad():
            outputs.append(m(x))
    assert states[0].keys() == states[1].keys()
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
    expected = (3, spec.num_classes) if spec.task == "classify" else (3, spec.input_shape[0], spec.num_classes)
    assert outputs[0].shape == expected
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
    # checkpoints interchange: bigmodel weights load into the torch model and back
    other = build_model(name, spec, SMALL[name], "torch")
    other.load_state_dict(states[0])


@pytest.mark.parametrize("name,spec", CASES, ids=[f"{n}-{s.kind}-{s.task}" for n, s in CASES])
def test_backward_reaches_every_parameter(name, spec):
    torch.manual_seed(0)
    m = build_model(name, spec, SMALL[name], "bigmodel")
    out = m(_inputs(spec))
    out.float().square().mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing


def test_layer_lookup_uses_bigmodel_nn_where_it_exists():
    L = Layers("bigmodel")
    assert L.MaxPool2d is bigmodel.nn.MaxPool2d
    assert Layers("torch").MaxPool2d is torch.nn.MaxPool2d
    assert L.Linear is getattr(bigmodel.nn, "Linear", torch.nn.Linear)
    m = build_model("cnn", IMAGE, SMALL["cnn"], "bigmodel")
    pools = [mod for mod in m.modules() if isinstance(mod, torch.nn.MaxPool2d)]
    assert pools and all(type(p) is bigmodel.nn.MaxPool2d for p in pools)
    rep = layer_report(m, "bigmodel")
    assert "MaxPool2d" in rep["bigmodel"]
    for fam in ("Conv2d",):
        assert (fam in rep["fallback"]) == (not hasattr(bigmodel.nn, fam))
    torch_rep = layer_report(build_model("cnn", IMAGE, SMALL["cnn"], "torch"), "torch")
    assert torch_rep["bigmodel"] == [] and torch_rep["fallback"] == []


def test_a_kernel_landing_in_bigmodel_nn_is_picked_up(monkeypatch):
    """Simulate the Conv2d and TransformerEncoderLayer families landing: the models need no change."""

    class Conv2d(torch.nn.Conv2d):
        pass

    class TransformerEncoderLayer(torch.nn.TransformerEncoderLayer):
        pass

    Conv2d.__module__ = TransformerEncoderLayer.__module__ = "bigmodel.nn.fake"
    monkeypatch.setattr(bigmodel.nn, "Conv2d", Conv2d, raising=False)
    monkeypatch.setattr(bigmodel.nn, "TransformerEncoderLayer", TransformerEncoderLayer, raising=False)
    torch.manual_seed(3)
    ours = build_model("transformer", IMAGE, SMALL["transformer"], "bigmodel")
    torch.manual_seed(3)
    theirs = build_model("transformer", IMAGE, SMALL["transformer"], "torch")
    assert type(ours.patch_embed) is Conv2d and all(type(l) is TransformerEncoderLayer for l in ours.layers)
    rep = layer_report(ours, "bigmodel")
    assert {"Conv2d", "TransformerEncoderLayer"} <= set(rep["bigmodel"])
    assert "Conv2d" not in rep["fallback"] and "TransformerEncoderLayer" not in rep["fallback"]
    for (k, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert torch.equal(a, b), k


def test_model_options_are_typed_and_checked():
    assert model_config("cnn", {"channels": "8,16", "dropout": "0.5"})["channels"] == [8, 16]
    assert model_config("lstm", {"bidirectional": "true", "layers": 2})["bidirectional"] is True
    with pytest.raises(ConfigError, match="cnn has no model option 'width'; its options are: channels"):
        model_config("cnn", {"width": 3})
    with pytest.raises(ConfigError, match="model option 'hidden' of lstm must be an integer, got 'big'"):
        model_config("lstm", {"hidden": "big"})
    with pytest.raises(ConfigError, match="'dropout' must be in \\[0, 1\\)"):
        model_config("mlp", {"dropout": 1.5})
    for bad, message in (("lots", "must be a number, got 'lots'"), ("nan", "must be a finite number, got 'nan'"),
                         (True, "must be a finite number, got True")):
        with pytest.raises(ConfigError, match=f"model option 'dropout' of mlp {message}"):
            model_config("mlp", {"dropout": bad})
    with pytest.raises(ConfigError, match="'dim' \\(30\\) must be a multiple of 'heads' \\(4\\)"):
        model_config("transformer", {"dim": 30})
    with pytest.raises(ConfigError, match="'kernel_size' must be odd"):
        model_config("cnn", {"kernel_size": 4})
    with pytest.raises(ConfigError, match="unknown model 'resnet'; choose one of: cnn, lstm"):
        model_config("resnet")


def test_model_data_mismatch_errors():
    with pytest.raises(ConfigError, match="model 'cnn' does not do classification of token sequences"):
        build_model("cnn", TOKENS)
    with pytest.raises(ConfigError, match="'transformer-lm' does not do classification of images"):
        build_model("transformer-lm", IMAGE)
    with pytest.raises(ConfigError, match="bidirectional LSTM would see the tokens it must predict"):
        build_model("lstm", LM, {"bidirectional": True})
    with pytest.raises(ConfigError, match="patch_size 5 must divide the image size 28x28"):
        build_model("transformer", IMAGE, {"patch_size": 5})
    with pytest.raises(ConfigError, match="backend must be one of bigmodel, torch, got 'jax'"):
        build_model("mlp", IMAGE, backend="jax")


def test_lstm_options_stacked_bidirectional():
    m = build_model("lstm", IMAGE, {"hidden": 8, "layers": 2, "bidirectional": True, "dropout": 0.2})
    assert m.lstm.num_layers == 2 and m.lstm.bidirectional and m.lstm.dropout == 0.2
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_transformer_lm_is_causal():
    torch.manual_seed(0)
    m = build_model("transformer-lm", LM, SMALL["transformer-lm"]).eval()
    x = torch.randint(0, 25, (2, 16))
    y = x.clone()
    y[:, 10:] = (y[:, 10:] + 1) % 25  # change only the future
    with torch.no_grad():
        torch.testing.assert_close(m(x)[:, :10], m(y)[:, :10])
        assert not torch.allclose(m(x)[:, 10:], m(y)[:, 10:])


def test_every_model_has_train_defaults():
    for name, entry in MODELS.items():
        assert {"epochs", "batch_size", "lr", "optimizer"} <= set(entry.train_defaults), name
