"""`bigmodel bench all` / `bench plot`: a tiny suite end to end, the JSON schema, the PNG, the
RESULTS.md block rewrite, and clear errors for bad suite files and arguments."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bigmodel.bench import suite as suite_mod
from bigmodel.bench.results_md import GENERATED_HEADING, ResultsFileError, begin, end, update_blocks
from bigmodel_cli.app import app

runner = CliRunner()


def flat(text: str) -> str:
    """CLI output with Rich's error-box borders and line wrapping removed."""
    return " ".join(text.replace("│", " ").replace("╭", " ").replace("╰", " ").replace("─", " ").split())

TINY_SUITE = """
[settings]
warmup = 1
repeats = 3

[quick]
warmup = 0
repeats = 3
max_seconds = 0.5

[pool]
ops = ["max"]
layouts = ["nchw"]
passes = ["fwd"]
cases = [{ shape = [2, 4, 8, 8], kernel = 2, stride = 2 }]

[gemm]
shapes = [[16, 24, 8]]

[conv]
layouts = ["nchw"]
passes = ["fwd"]
cases = [{ shape = [2, 3, 8, 8], out_channels = 4, kernel = 3, padding = 1 }]

[lstm]
passes = ["inference"]
baselines = ["lstm"]
cases = [{ batch = 2, steps = 3, input_size = 4, hidden_size = 5 }]

[attention]
causal = [false]
passes = ["fwd"]
naive = true
cases = [{ B = 1, H = 2, L = 16, E = 8 }]

[model]
passes = ["infer"]
profile_steps = 1
models = [{ name = "cnn", batch_size = 4, options = { channels = "4,8", hidden = 16 } }]

[sweeps.attention]
B = 1
H = 2
E = 8
lengths = [16, 32]

[sweeps.conv]
input = [3, 8, 8]
out_channels = 4
kernel = 3
batches = [1, 2]

[sweeps.gemm]
sizes = [16, 32]
"""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _write(tmp_path, text, name="suite.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    """One --quick run of the tiny suite, with every output, shared by the tests below."""
    d = tmp_path_factory.mktemp("suite")
    suite = _write(d, TINY_SUITE)
    results_md = d / "RESULTS.md"
    results_md.write_text("# Results\n\nHand-written prose.\n\n<!-- bench:begin pool -->\nold table\n"
                          "<!-- bench:end pool -->\n\nMore prose after.\n")
    r = runner.invoke(app, ["bench", "all", "--suite", str(suite), "--quick", "--threads", "1",
                            "--json-file", str(d / "all.json"), "--csv", str(d / "all.csv"),
                            "--plot", str(d / "scaling.png"), "--results", str(results_md)])
    return d, r


def test_suite_runs_end_to_end(suite_run):
    d, r = suite_run
    assert r.exit_code == 0, r.output
    for title in ("pooling", "GEMM", "conv2d", "LSTM", "attention", "models", "sweep: attention"):
        assert title in r.output


def test_suite_json_schema(suite_run):
    d, _ = suite_run
    doc = json.loads((d / "all.json").read_text())
    assert doc["schema"] == "bigmodel-bench/1"
    env = doc["environment"]
    for key, typ in {"cpu": str, "cores": int, "threads": int, "isa": str, "torch": str, "bigmodel": str,
                     "date": str}.items():
        assert isinstance(env[key], typ), key
    assert "git_commit" in env and env["threads"] == 1
    assert doc["meta"]["quick"] is True
    suites = {res["suite"] for res in doc["results"]}
    assert suites == {"pool", "gemm", "conv", "lstm", "attention", "model", "sweep:attention", "sweep:conv",
                      "sweep:gemm"}
    for res in doc["results"]:
        assert res["status"] == "ok", res
        assert isinstance(res["name"], str) and isinstance(res["params"], dict)
        for side in ("ours", "torch"):  # every result, attention included, in the form `bench compare` reads
            assert res[side]["median_ms"] > 0 and res[side]["iqr_ms"] >= 0 and len(res[side]["times_ms"]) >= 3
        assert res["speedup"] == pytest.approx(res["torch"]["median_ms"] / res["ours"]["median_ms"])
    attn = [res for res in doc["results"] if res["suite"] == "sweep:attention"]
    assert [res["params"]["L"] for res in attn] == [16, 32]
    assert all(set(res["impls"]) == {"bigmodel", "torch"} for res in attn)
    assert [bd["model"] for bd in doc["breakdown"]] == ["cnn"]
    assert doc["meta"]["families"]["pool"]["timing"] == {"warmup": 0, "repeats": 3, "max_seconds": 0.5}


def test_suite_csv_has_environment_header(suite_run):
    d, _ = suite_run
    text = (d / "all.csv").read_text()
    assert text.startswith("# cpu: ") and "# isa: " in text and "\nsuite,case,status," in text
    assert "sweep:gemm,square 32," in text


def test_plot_png_written_and_opens(suite_run):
    d, _ = suite_run
    data = (d / "scaling.png").read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 0 and height > 0
    import matplotlib.image

    img = matplotlib.image.imread(d / "scaling.png")
    assert img.shape[0] == height and img.shape[1] == width
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]  # atomic: no temporary left behind


def test_bench_plot_redraws_from_json(suite_run, tmp_path):
    d, _ = suite_run
    out = tmp_path / "again.png"
    r = runner.invoke(app, ["bench", "plot", str(d / "all.json"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_results_md_blocks_rewritten_prose_kept(suite_run):
    d, _ = suite_run
    text = (d / "RESULTS.md").read_text()
    assert text.startswith("# Results\n\nHand-written prose.\n\n<!-- bench:begin pool -->\n")
    assert "old table" not in text and "\n\nMore prose after.\n" in text
    pool_block = text.split(begin("pool"))[1].split(end("pool"))[0]
    assert "| max 2x4x8x8 k2s2p0 NCHW fwd |" in pool_block
    # Missing blocks were appended under the generated heading, in order.
    tail = text.split(GENERATED_HEADING)[1]
    for name in ("environment", "gemm", "conv", "lstm", "attention", "model", "sweep-attention", "sweep-conv",
                 "sweep-gemm"):
        assert begin(name) in tail and end(name) in tail
    assert text.count(GENERATED_HEADING) == 1


def test_update_blocks_synthetic_and_idempotent():
    original = ("# Title\n\nprose A\n\n<!-- bench:begin a -->\nstale\n<!-- bench:end a -->\n\nprose B\n"
                "<!-- bench:begin b -->\n<!-- bench:end b -->\ntrailing prose\n")
    blocks = {"a": "| new | table |\n", "b": "B content", "c": "appended"}
    once = update_blocks(original, blocks)
    assert once.startswith("# Title\n\nprose A\n\n<!-- bench:begin a -->\n| new | table |\n<!-- bench:end a -->\n"
                           "\nprose B\n<!-- bench:begin b -->\nB content\n<!-- bench:end b -->\ntrailing prose\n")
    assert "stale" not in once
    assert once.endswith(f"{GENERATED_HEADING}\n\n<!-- bench:begin c -->\nappended\n<!-- bench:end c -->\n")
    assert update_blocks(once, blocks) == once  # idempotent
    with pytest.raises(ResultsFileError, match="'x'.*must both be present"):
        update_blocks("<!-- bench:begin x -->\nno end\n", {"x": "y"})


def test_standard_suite_file_loads():
    """The default suite is found from a checkout and from an installed package (a copy setup.py ships)."""
    s = suite_mod.load_suite()
    assert s.names() == ["pool", "gemm", "conv", "lstm", "attention", "model", "sweep:attention", "sweep:conv",
                         "sweep:gemm"]
    models = s.families[5]
    assert models.name == "model"
    quick = suite_mod.load_suite(quick=True, only=["attention"])
    assert quick.names() == ["attention", "sweep:attention"] and quick.families[0].timing["repeats"] == 3


def test_failed_case_in_suite_is_reported_not_timed(tmp_path, monkeypatch):
    from bigmodel.bench import pool

    real = pool._make_case

    def broken(*args, **kw):
        c = real(*args, **kw)
        c.check = lambda: "forced mismatch for the test"
        c.impls = {"bigmodel": lambda: pytest.fail("a failed case was timed"),
                   "torch": lambda: pytest.fail("a failed case was timed")}
        return c
    monkeypatch.setattr(pool, "_make_case", broken)
    out = tmp_path / "r.json"
    r = runner.invoke(app, ["bench", "all", "--suite", str(_write(tmp_path, TINY_SUITE)), "--only", "pool",
                            "--quick", "--json-file", str(out)])
    assert r.exit_code == 1
    assert "forced mismatch for the test" in r.output and "FAILED" in r.output
    (res,) = json.loads(out.read_text())["results"]
    assert res["status"] == "failed" and res["ours"] is None and res["torch"] is None


@pytest.mark.parametrize("text,fragment", [
    ("[pooling]\ncases = []\n", "top level.pooling: unknown key"),
    ("[pool]\ncases = [{ shape = [2, 4, 8], kernel = 2 }]\n", "pool.cases[0].shape: expected a list of 4 positive"),
    ("[conv]\ncases = [{ shape = [2, 3, 8, 8], kernel = 0 }]\n", "conv.cases[0].kernel: expected an integer >= 1"),
    ("[attention]\ncases = [{ B = 1, H = 2, L = 16 }]\n", "attention.cases[0].E: expected an integer"),
    ("[model]\nmodels = [{ name = \"resnet\" }]\n", "model.models[0].name: unknown model 'resnet'"),
    ("[sweeps.conv]\ninput = [3, 8, 8]\nkernel = 3\nbatches = [0]\n", "sweeps.conv.batches"),
    ("[pool\n", "invalid TOML"),
])
def test_bad_suite_file(tmp_path, text, fragment):
    p = _write(tmp_path, text)
    r = runner.invoke(app, ["bench", "all", "--suite", str(p)])
    assert r.exit_code == 2
    assert str(p) in flat(r.output) and flat(fragment) in flat(r.output)


def test_missing_suite_file(tmp_path):
    r = runner.invoke(app, ["bench", "all", "--suite", str(tmp_path / "nope.toml")])
    assert r.exit_code == 2 and "nope.toml: suite file not found" in flat(r.output)


@pytest.mark.parametrize("args,fragment", [
    (["--only", "pool,bogus"], "unknown family 'bogus'"),
    (["--plot", "/nonexistent-dir/x.png"], "--plot: cannot write /nonexistent-dir/x.png"),
    (["--results", "/nonexistent-dir/R.md"], "--results: cannot write"),
])
def test_bench_all_bad_arguments(tmp_path, args, fragment):
    r = runner.invoke(app, ["bench", "all", "--suite", str(_write(tmp_path, TINY_SUITE)), *args])
    assert r.exit_code == 2
    assert flat(fragment) in flat(r.output)


def test_bench_plot_bad_input(tmp_path):
    r = runner.invoke(app, ["bench", "plot", str(tmp_path / "missing.json"), "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "missing.json: no such file" in flat(r.output)
    doc = tmp_path / "nosweep.json"
    doc.write_text(json.dumps({"schema": "bigmodel-bench/1", "environment": {}, "results": []}))
    r = runner.invoke(app, ["bench", "plot", str(doc), "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "no sweep results to plot" in flat(r.output)


def test_shipped_results_md_has_a_marker_pair_for_every_standard_block():
    # the checkout's file (the tests may run against an installed package, which has no RESULTS.md)
    text = (Path(__file__).resolve().parents[2] / "benchmarks" / "RESULTS.md").read_text()
    names = ["environment"] + [n.replace(":", "-") for n in suite_mod.load_suite().names()]
    for name in names:
        assert text.count(begin(name)) == 1 and text.count(end(name)) == 1, name
        assert text.index(begin(name)) < text.index(end(name))
    assert "bigmodel bench all --results benchmarks/RESULTS.md" in text
