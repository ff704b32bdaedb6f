"""The environment a figure depends on, and the one serializer of results: JSON (to and from),
CSV and Markdown. Rendering for the terminal (Rich tables) is the CLI's job."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from typing import Any, Iterable, Sequence

import torch

from .harness import OURS, Result, Timing

SCHEMA = "bigmodel-bench/1"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(path: str | None = None) -> str | None:
    """The commit of the git checkout at `path` (default: the working directory), if any."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=path or os.getcwd(),
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment() -> dict[str, Any]:
    """Everything a figure depends on: machine, threads, ISA path, versions, commit, date."""
    import bigmodel

    info = bigmodel.build_info()
    env = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "isa": bigmodel.active_isa(),
        "torch": torch.__version__,
        "bigmodel": bigmodel.__version__,
        "cuda_compiled": info["cuda_compiled"],
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return env


def fmt_ms(t) -> str:
    return "-" if t is None else f"{t.median_ms:.3f} ± {t.iqr_ms:.3f}"


def fmt_rate(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.1f}" if v < 10_000 else f"{v:,.0f}"


def failure_lines(results: Sequence[Result]) -> list[str]:
    return [f"{r.suite}: {r.name}: {r.status}: {r.message}" for r in results if r.status != "ok"]


# ---- the one serializer: JSON (both ways), CSV, Markdown -------------------------------------


def _timing_dict(r: Result, impl: str) -> dict[str, Any]:
    t = r.timings[impl]
    return {"median_ms": t.median_ms, "iqr_ms": t.iqr_ms, "times_ms": t.times_ms,
            **{f"{u}_per_s": r.throughput(u, impl) for u in r.work},
            **({"peak_rss_growth_mib": r.peak_mib[impl]} if impl in r.peak_mib else {})}


def result_to_dict(r: Result) -> dict[str, Any]:
    """One result: every implementation under "impls"; "ours"/"torch"/"speedup" (bigmodel and
    the baseline) keep the layout of bigmodel-bench/1 files, which `bench compare` reads."""
    d: dict[str, Any] = {"suite": r.suite, "name": r.name, "params": r.params, "status": r.status,
                         "message": r.message, "work": r.work, "baseline": r.baseline,
                         "impls": {k: _timing_dict(r, k) for k in r.timings}}
    d["ours"] = d["impls"].get(OURS)
    d["torch"] = d["impls"].get(r.baseline)
    d["speedup"] = r.speedup
    d["speedups"] = {k: r.speedup_over(k) for k in r.timings if k != OURS}
    if r.skipped:
        d["skipped"] = r.skipped
    d.update(r.extra)
    return d


def result_from_dict(d: dict[str, Any]) -> Result:
    """The inverse of result_to_dict; also reads the results of files written before "impls"
    existed (their "ours"/"torch" sides)."""
    baseline = d.get("baseline", "torch")
    impls = d.get("impls") or {k: v for k, v in ((OURS, d.get("ours")), (baseline, d.get("torch"))) if v}
    known = {"suite", "name", "params", "status", "message", "work", "baseline", "impls", "ours", "torch",
             "speedup", "speedups", "skipped", "flops", "speedup_vs_torch", "speedup_vs_naive"}
    return Result(d.get("suite", "?"), d["name"], d.get("params", {}), d.get("status", "ok"), d.get("message", ""),
                  {k: Timing(list(v["times_ms"])) for k, v in impls.items()}, dict(d.get("work", {})), baseline,
                  {k: v["peak_rss_growth_mib"] for k, v in impls.items() if v.get("peak_rss_growth_mib") is not None},
                  dict(d.get("skipped", {})), {k: v for k, v in d.items() if k not in known})


def results_to_json(results: Sequence[Result], env: dict[str, Any] | None = None,
                    meta: dict[str, Any] | None = None) -> dict[str, Any]:
    from .attention import causal_speedups

    doc = {"schema": SCHEMA, "environment": env if env is not None else environment(), "meta": meta or {},
           "results": [result_to_dict(r) for r in results]}
    breakdowns = [r.extra["breakdown"] for r in results if "breakdown" in r.extra]
    if breakdowns:
        doc["breakdown"] = breakdowns
    causal = causal_speedups(results)
    if causal:
        doc["causal_speedup"] = [{"case": k, "noncausal_over_causal": v} for k, v in causal]
    return doc


def results_from_json(doc: dict[str, Any]) -> list[Result]:
    return [result_from_dict(d) for d in doc["results"]]


def markdown_table(results: Sequence[Result], units: Iterable[str] = ()) -> str:
    units = list(units)
    lines = ["| case | bigmodel ms | torch ms | " + "".join(f"bigmodel {u}/s | torch {u}/s | " for u in units)
             + "speedup |", "|---|---:|---:|" + "---:|---:|" * len(units) + "---:|"]
    for r in results:
        if r.status != "ok":
            msg = r.message.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {r.name} | {r.status.upper()}: {msg} | | " + "| | " * len(units) + "|")
            continue
        rates = "".join(f"{fmt_rate(r.throughput(u, 'ours'))} | {fmt_rate(r.throughput(u, 'torch'))} | "
                        for u in units)
        lines.append(f"| {r.name} | {fmt_ms(r.ours)} | {fmt_ms(r.torch)} | {rates}{r.speedup:.2f}x |")
    text = "\n".join(lines) + "\n"
    for r in results:
        if "breakdown" in r.extra:
            text += "\n" + breakdown_markdown(r.extra["breakdown"])
    return text


def breakdown_markdown(bd: dict[str, Any]) -> str:
    """A model breakdown (profile.Breakdown.to_dict()) as a Markdown table."""
    lines = [f"{bd['model']} {bd['pass']} (self CPU ms per step, torch.profiler, {bd['profiled_steps']} steps):", "",
             "| family | bigmodel ms | share | torch ms | share | bigmodel/torch |", "|---|---:|---:|---:|---:|---:|"]

    def share(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    for r in bd["rows"]:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(f"| {r['family']} | {r['bigmodel_ms']:.3f} | {share(r['bigmodel_share'])} | {r['torch_ms']:.3f} | "
                     f"{share(r['torch_share'])} | {ratio} |")
    for fam, note in bd["notes"].items():
        lines.append(f"\nNote ({fam}): {note}")
    return "\n".join(lines) + "\n"


def environment_line(env: dict[str, Any]) -> str:
    return (f"Machine: {env.get('cpu')}, {env.get('cores')} cores, {env.get('threads')} threads, ISA path "
            f"{env.get('isa')}; torch {env.get('torch')}, bigmodel {env.get('bigmodel')}"
            + (f" ({env['git_commit']})" if env.get("git_commit") else "") + f"; {env.get('date')}")


def results_to_markdown(results: Sequence[Result], env: dict[str, Any], command: str,
                        units: Iterable[str] = ()) -> str:
    """A Markdown table of results, headed by the command and the environment that produced it."""
    return f"Command: `{command}`  \n{environment_line(env)}\n\n" + markdown_table(results, units)


def results_to_csv(results: Sequence[Result], env: dict[str, Any]) -> str:
    """CSV with one row per case; the environment comes first as '# key: value' comment lines."""
    import csv
    import io

    buf = io.StringIO()
    for k, v in env.items():
        buf.write(f"# {k}: {v}\n")
    units = sorted({u for r in results for u in r.work})
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["suite", "case", "status", "bigmodel_median_ms", "bigmodel_iqr_ms", "torch_median_ms",
                     "torch_iqr_ms", "speedup", *[f"bigmodel_{u}_per_s" for u in units],
                     *[f"torch_{u}_per_s" for u in units], "params", "message"])

    def num(v):
        return "" if v is None else f"{v:.6g}"

    for r in results:
        writer.writerow([
            r.suite, r.name, r.status,
            num(r.ours.median_ms if r.ours else None), num(r.ours.iqr_ms if r.ours else None),
            num(r.torch.median_ms if r.torch else None), num(r.torch.iqr_ms if r.torch else None),
            num(r.speedup), *[num(r.throughput(u, "ours")) for u in units],
            *[num(r.throughput(u, "torch")) for u in units],
            json.dumps(r.params, sort_keys=True), r.message,
        ])
    return buf.getvalue()


def _parallel_backend() -> str:
    for line in torch.__config__.parallel_info().splitlines():
        if line.startswith("ATen parallel backend"):
            return line.strip()
    return "ATen parallel backend unknown"


def environment_report() -> str:
    """A paste-ready description of this installation for bug reports (`bigmodel info --env`)."""
    import sys

    import bigmodel

    info = bigmodel.build_info()
    env = environment()
    lines = [
        f"bigmodel:        {env['bigmodel']} (built against torch {info['torch_built_against']}, "
        f"{info['build_type']}, {info['compiler']})",
        f"git commit:      {env['git_commit'] or 'n/a (not run from a git checkout)'}",
        f"torch:           {torch.__version__} (CUDA {torch.version.cuda or 'none'}; {_parallel_backend()})",
        f"python:          {sys.version.split()[0]} ({platform.python_implementation()})",
        f"os:              {platform.platform()}",
        f"cpu:             {env['cpu']} ({bigmodel._C.build_info()['cpu'] or 'no cpuid brand'}), {env['cores']} logical cores",
        f"threads:         {env['threads']} (torch.get_num_threads)",
        f"ISA paths:       compiled {', '.join(info['isa_compiled'])}; runnable {', '.join(info['isa_supported'])}; "
        f"active {info['isa_active']}",
        f"BIGMODEL_ISA:    {os.environ.get('BIGMODEL_ISA', '(unset)')}",
        f"OMP_NUM_THREADS: {os.environ.get('OMP_NUM_THREADS', '(unset)')}",
        f"CUDA kernels:    {'compiled for ' + ', '.join(info['cuda_archs']) + ' (' + info['nvcc'] + ')' if info['cuda_compiled'] else 'not compiled'}",
        f"GPU:             {env['gpu'] or 'none visible'}",
        f"ops:             {', '.join(op['name'] + '[' + '/'.join(op['backends']) + ']' for op in info['ops'])}",
    ]
    return "\n".join(lines) + "\n"
