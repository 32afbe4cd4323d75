"""The pipeline report: one self-contained HTML file (figures inline as base64 PNG) and findings.json.

    <out>/report.html     findings table, then per layer: figure, metrics table, paired differences
    <out>/findings.json   a list of {finding, layer, variant, verdict, rule, ours, numbers: [...],
                          source: "llm"}, then the bandit counterparts' {finding, layer, verdict,
                          numbers: {...}, source: "bandit", llm_layer}
    <out>/analysis.json   every number in the report
    <out>/figures/*.png   the figures, also as files

The verdicts are computed from the data by the rules in `rftlab.pipeline.findings`; nothing in
the report is hand-written except the paper's findings themselves (from the spec).

Bandit counterparts: with a finished `rftlab bandit pipeline` directory (`--bandit DIR`, or
`<out>/bandit/` when it is there) every LLM layer that has a counterpart (its spec's `bandit:` key)
gets a block with the bandit's figure and findings, drawn and tabled by the same helpers; bandit
layers with no LLM layer in the report get their own section. `bandit_page` renders the bandit
pipeline's own report.html with the same blocks.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from rftlab.errors import RftlabError
from rftlab.files import ANALYSIS_FILE, BANDIT_DIR, BANDIT_MANIFEST, FINDINGS_FILE, REPORT_FILE, write_atomic
from rftlab.pipeline import analysis
from rftlab.pipeline.analysis import METRIC_HELP
from rftlab.pipeline.spec import spec_from_dict
from rftlab.pipeline.summarize import PAIRED_METRICS, TABLE_METRICS, read_pipeline, summarize
from rftlab.report.cells import escape as _e
from rftlab.report.cells import estimate_cell as _cell
from rftlab.report.cells import fmt as _fmt
from rftlab.report.decomposition_figures import plot_decomposition
from rftlab.report.multitask import multitask_block
from rftlab.report.sweep_figures import plot_layer
from rftlab.verdicts import smoke_caveat

STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.82em; margin: .6em 0 1.2em; }
th, td { border: 1px solid #ddd; padding: .25em .5em; vertical-align: top; }
th { background: #f4f4f4; text-align: left; } td.num { text-align: right; white-space: nowrap; }
.agrees { background: #d9f2d9; } .disagrees { background: #f8d7d7; } .inconclusive { background: #eee; }
.verdict { font-weight: 600; text-align: center; }
.note { color: #555; font-size: 0.9em; } .problem { color: #a33; }
code { background: #f4f4f4; padding: 0 .2em; } img { max-width: 100%; border: 1px solid #eee; }
details { margin: .5em 0; }
.bandit { border-left: 4px solid #8ab4d8; padding: .1em 0 .1em 1em; margin: 1.5em 0; }
.bandit h3 { margin-top: .3em; }
.scroll { overflow-x: auto; }  /* the metric tables are wider than the page on narrow screens */
"""

# bandit layer id (the "layer" of rftlab.bandit.pipeline's findings) -> word in the LLM layer's name
BANDIT_COUNTERPARTS = {"L0": "minimalist", "L1": "advantage", "L2": "rollouts", "L3": "reward", "L4": "difficulty"}
BANDIT_TITLES = {
    "L0": "minimalist",
    "L1": "advantage function",
    "L2": "rollouts per round",
    "L3": "reward design",
    "L4": "difficulty (p0)",
    "next": "number of training instances (no LLM layer; cf. the batch layers)",
    "adaptive": "adaptive reward and advantage designs",
}
BANDIT_NUMBERS_HEAD = "what the bandit says (paired seeds; triples are mean [99% interval] of a difference)"


def _png_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _findings_table(
    items: list[dict], numbers_head: str = "what our data say (95% bootstrap intervals over seeds)"
) -> str:
    if not items:
        return "<p>No claims in this spec.</p>"
    rows = []
    for f in items:
        numbers = "<br>".join(
            _e(n["text"]) + (f" → <b>{_e(n['verdict'])}</b>" if n.get("verdict") else "") for n in f["numbers"]
        )
        rows.append(
            f"<tr><td>{_e(f['layer'])}</td><td>{_e(f['finding'])}"
            + (f'<br><span class="note">{_e(f["says"])}</span>' if f.get("says") else "")
            + f"</td><td>{_e(f['variant'])}</td><td>{numbers}</td>"
            f'<td class="verdict {_e(f["verdict"])}">{_e(f["verdict"])}'
            + (' <span class="note">(smoke only)</span>' if f.get("quick") else "")
            + f'</td><td class="note">{_e(f["rule"])}</td></tr>'
        )
    return (
        "<table><tr><th>layer</th><th>finding of the paper</th><th>variant</th>"
        f"<th>{_e(numbers_head)}</th><th>verdict</th><th>rule</th></tr>" + "".join(rows) + "</table>"
    )


def _metrics_table(layer: dict) -> str:
    head = "".join(f'<th title="{_e(METRIC_HELP[m])}">{_e(m)}</th>' for m in TABLE_METRICS)
    rows = []
    for v in layer["variants"]:
        ref = " (reference)" if v["name"] == layer["reference"] else ""
        cells = "".join(_cell(v["metrics"].get(m)) for m in TABLE_METRICS)
        rows.append(
            f"<tr><td><b>{_e(v['name'])}</b>{ref}<br><small>{v['finished']}/{v['seeds']} seeds, "
            f"{v['rounds'] if v['rounds'] is not None else '–'} rounds</small></td>{cells}</tr>"
        )
    return f'<div class="scroll"><table><tr><th>variant</th>{head}</tr>{"".join(rows)}</table></div>'


def _paired_table(layer: dict) -> str:
    rows = []
    for v in layer["variants"]:
        if not v["paired"]:
            continue
        cells = "".join(_cell(v["paired"].get(m), signed=True) for m in PAIRED_METRICS)
        rows.append(f"<tr><td><b>{_e(v['name'])}</b> − {_e(layer['reference'])}</td>{cells}</tr>")
    if not rows:
        return ""
    head = "".join(f'<th title="{_e(METRIC_HELP[m])}">{_e(m)}</th>' for m in PAIRED_METRICS)
    return (
        "<p>Paired differences (variant − reference, same seeds), mean with 95% bootstrap interval:</p>"
        f'<div class="scroll"><table><tr><th>comparison</th>{head}</tr>{"".join(rows)}</table></div>'
    )


def _rate_text(rate: dict | None) -> str:
    if not rate or rate.get("value") is None:
        return "–"
    ci = "" if rate.get("low") is None else f" <small>[{_fmt(rate['low'])}, {_fmt(rate['high'])}]</small>"
    return f"{_fmt(rate['value'])}{ci}"


def _decomposition_table(layer: dict) -> str:
    """Pass@1 = format rate x accuracy among well-formed answers, base -> final, per variant and split."""
    rows = []
    for v in layer["variants"]:
        dec = v.get("decomposition")
        if not dec:
            continue
        for split in ("test", "train"):
            d = dec[split]
            cells = "".join(
                f'<td class="num">{_rate_text(d["base"][f])} → {_rate_text(d["final"][f])}</td>'
                f'<td class="num">{_e(d["moved"][f] or "–")}</td>'
                for f in ("format_rate", "accuracy_given_format")
            )
            p1 = f"{_fmt(d['base']['pass_at_1'])} → {_fmt(d['final']['pass_at_1'])}"
            rows.append(f'<tr><td><b>{_e(v["name"])}</b></td><td>{split}</td><td class="num">{p1}</td>{cells}</tr>')
    if not rows:
        return ""
    return (
        "<p>Pass@1 = format rate × accuracy among well-formed answers (a well-formed answer: the reward's "
        "extraction finds a final answer in the task's format, whatever its value), base → final, pooled over "
        "the seeds' responses with 95% Wilson intervals (sampling error, not between-seed spread); "
        "<i>moved</i>: up/down when the final interval lies wholly above/below the base's, else flat:</p>"
        '<div class="scroll"><table><tr><th>variant</th><th>split</th><th>Pass@1</th><th>format rate</th>'
        "<th>moved</th><th>accuracy given format</th><th>moved</th></tr>" + "".join(rows) + "</table></div>"
    )


DECOMPOSITION_METRICS = ("test_format_gain", "test_acc_given_format_gain")


def _decomposition_figure(layer: dict, groups: dict, path: Path) -> str:
    """The format x accuracy figure, for a layer with a claim about either factor (else nothing)."""
    metrics = {n["metric"] for f in layer["findings"] for n in f["numbers"]}
    if not metrics & set(DECOMPOSITION_METRICS) or not any(groups.values()):
        return ""
    return _png_tag(plot_decomposition(groups, path, title=layer["name"]), f"{layer['name']}: format x accuracy")


def _saturation_table(layer: dict) -> str:
    """Per variant: when train Pass@1 saturated, and how test Pass@1 changed after it."""
    rows, rule = [], ""
    for v in layer["variants"]:
        sat = v.get("saturation")
        if not sat:
            continue
        rule = sat["rule"]
        rows.append(
            f'<tr><td><b>{_e(v["name"])}</b></td><td class="num">{sat["saturated"]}/{sat["seeds"]}</td>'
            + _cell(sat["sat_round"])
            + _cell(sat["post_sat_rounds"])
            + _cell(sat["post_sat_test_gain"], signed=True)
            + "</tr>"
        )
    if not rows:
        return ""
    return (
        f"<p>Post-saturation generalization ({_e(rule)}; 95% bootstrap intervals over the seeds that saturated):</p>"
        '<div class="scroll"><table><tr><th>variant</th><th>seeds saturated</th><th>saturation round</th>'
        "<th>rounds after it</th><th>test Pass@1 change after it</th></tr>" + "".join(rows) + "</table></div>"
    )


def _variants_list(layer: dict) -> str:
    items = []
    for v in layer["variants"]:
        over = (
            ", ".join(f"<code>{_e(k)}={_e(json.dumps(val))}</code>" for k, val in v["overrides"].items())
            or "(layer base)"
        )
        note = f' <span class="note">— {_e(v["note"])}</span>' if v["note"] else ""
        problems = "".join(f'<br><span class="problem">{_e(v["name"])}: {_e(p)}</span>' for p in v["problems"])
        items.append(f"<li><b>{_e(v['name'])}</b> [{_e(v['model'])}]: {over}{note}{problems}</li>")
    return "<ul>" + "".join(items) + "</ul>"


def load_bandit(path: str | Path) -> dict:
    """A finished bandit pipeline directory: {dir, scale, seed, figures: [{layer, caption, file}], findings}."""
    path = Path(path)
    if not (path / BANDIT_MANIFEST).is_file() or not (path / FINDINGS_FILE).is_file():
        raise RftlabError(
            f"{path} is not a finished bandit pipeline directory (no {BANDIT_MANIFEST}); run "
            f"`rftlab bandit pipeline --out {path}` first"
        )
    manifest = json.loads((path / BANDIT_MANIFEST).read_text())
    return {"dir": path, **manifest, "findings": json.loads((path / FINDINGS_FILE).read_text())}


def bandit_counterpart(layer_name: str) -> str | None:
    """The bandit layer id whose counterpart an LLM layer is by the words of `BANDIT_COUNTERPARTS`, or None:
    for specs whose layers declare no `bandit:` counterpart (written before that key existed)."""
    low = layer_name.lower()
    return next((b for b, word in BANDIT_COUNTERPARTS.items() if word in low), None)


def bandit_counterparts(out: Path) -> dict[str, str]:
    """LLM layer name -> bandit layer id: what the spec's layers declare (`bandit: L1`); a spec that
    declares none is matched by the layer names' words (`bandit_counterpart`)."""
    spec = spec_from_dict(read_pipeline(out)["spec"])
    declared = {layer.name: layer.bandit for layer in spec.layers if layer.bandit}
    if declared:
        return declared
    return {layer.name: b for layer in spec.layers if (b := bandit_counterpart(layer.name))}


def _bandit_value(v) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_bandit_value(x)}" for k, x in v.items())
    if isinstance(v, list):
        if len(v) in (2, 3) and all(isinstance(x, int | float) for x in v):
            lo, hi = (_fmt(x, signed=len(v) == 3) for x in v[-2:])
            return (f"{_fmt(v[0], signed=True)} " if len(v) == 3 else "") + f"[{lo}, {hi}]"
        return "; ".join(_bandit_value(x) for x in v)
    if isinstance(v, float) and v != 0 and abs(v) < 0.01:
        return f"{v:.2g}"
    return _fmt(v) if isinstance(v, float) else str(v)


def _bandit_claims(bandit: dict) -> list[tuple[str, str]]:
    """(claim, rule) per bandit finding, from bandit.json; a directory written before bandit.json
    carried them shows the finding's whole text as the claim."""
    claims = bandit.get("claims")
    if claims is None or len(claims) != len(bandit["findings"]):
        return [(f["finding"], "") for f in bandit["findings"]]
    return [(c["claim"], c["rule"]) for c in claims]


def _bandit_rows(bandit: dict, layer_id: str | None = None) -> list[dict]:
    return [
        _bandit_row(f, claim, rule)
        for f, (claim, rule) in zip(bandit["findings"], _bandit_claims(bandit), strict=True)
        if layer_id is None or f["layer"] == layer_id
    ]


def _bandit_row(f: dict, finding: str, rule: str) -> dict:
    """A bandit finding in the shape `_findings_table` draws."""
    numbers = [
        {"text": f"{k}: {_bandit_value(x)}"}
        for k, v in f["numbers"].items()
        for x in (v if isinstance(v, list) and v and isinstance(v[0], dict) else [v])  # a row per dict
    ]
    return {
        "layer": f["layer"],
        "finding": finding,
        "variant": "bandit",
        "numbers": numbers,
        "verdict": f["verdict"],
        "rule": rule,
        "quick": f.get("quick", False),
    }


def _bandit_layers(bandit: dict) -> list[str]:
    seen = [x["layer"] for x in bandit["figures"]] + [f["layer"] for f in bandit["findings"]]
    return list(dict.fromkeys(seen))


def _bandit_block(bandit: dict, layer_id: str, heading: str = "Bandit counterpart") -> str:
    """Figure(s) and findings of one bandit layer, in the report's look."""
    figs = [x for x in bandit["figures"] if x["layer"] == layer_id]
    items = _bandit_rows(bandit, layer_id)
    images = "".join(
        f'<p class="note">{_e(x["caption"])}</p>' + _png_tag(Path(bandit["dir"]) / x["file"], x["caption"])
        for x in figs
    )
    return (
        f'<div class="bandit" id="bandit-{_safe(layer_id)}"><h3>{_e(heading)}: '
        f"{_e(BANDIT_TITLES.get(layer_id, layer_id))} <small>[bandit {_e(layer_id)}]</small></h3>"
        + images
        + _findings_table(items, BANDIT_NUMBERS_HEAD)
        + "</div>"
    )


def _bandit_intro(bandit: dict, where: str) -> str:
    counts = ", ".join(
        f"{sum(f['verdict'] == k for f in bandit['findings'])} {k}" for k in ("agrees", "disagrees", "inconclusive")
    )
    return (
        f'<p class="note">Bandit counterparts ({_e(where)}; scale {_e(json.dumps(bandit.get("scale") or {}))}, '
        f"seed {_e(bandit.get('seed'))}): simulated with rftlab.bandit, paired seeds, 99% paired normal "
        f"intervals; verdicts follow the fixed rule stated with each finding and describe the bandit model, "
        f"not the LLM runs. Findings: {counts}.</p>"
    )


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def bandit_page(bandit: dict) -> str:
    """The bandit pipeline's own report.html: its findings table, then one block per layer."""
    body = (
        "<h1>Bandit counterparts of the paper's layers</h1>"
        + _bandit_intro(bandit, "rftlab bandit pipeline")
        + _findings_table(_bandit_rows(bandit), BANDIT_NUMBERS_HEAD)
        + "".join(_bandit_block(bandit, b, "Layer") for b in _bandit_layers(bandit))
    )
    return _page("rftlab bandit report", body)


def write_bandit_page(bandit_dir: str | Path) -> Path:
    """Render a finished bandit pipeline directory's own report.html (PNGs embedded); its path."""
    path = Path(bandit_dir) / REPORT_FILE
    write_atomic(path, bandit_page(load_bandit(bandit_dir)))
    return path


def build_report(out: str | Path, *, n_boot: int = analysis.BOOTSTRAP, bandit: str | Path | None = None) -> Path:
    """Write report.html, findings.json, analysis.json and figures/ for a pipeline directory.

    `bandit`: a finished bandit pipeline directory whose counterparts go next to the LLM layers;
    None takes `<out>/bandit` when it holds one.
    """
    out = Path(out)
    result, curves = summarize(out, n_boot=n_boot)
    if bandit is None and (out / BANDIT_DIR / BANDIT_MANIFEST).is_file():
        bandit = out / BANDIT_DIR
    bandit_data = load_bandit(bandit) if bandit is not None else None
    counterparts = bandit_counterparts(out) if bandit_data else {}
    shown: dict[str, str] = {}  # bandit layer id -> the LLM layer it is shown under
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    sections = []
    for i, layer in enumerate(result["layers"]):
        png = plot_layer(
            curves[layer["name"]], figures / f"{i:02d}_{_safe(layer['name'])}.png", title=f"{layer['name']}"
        )
        ctx = layer["context"]
        base = ", ".join(f"<code>{_e(k)}={_e(json.dumps(v))}</code>" for k, v in layer["base"].items()) or "none"
        sections.append(
            f'<h2 id="{_safe(layer["name"])}">{_e(layer["name"])}</h2>'
            f"<p><b>Paper:</b> {_e(layer['finding'])}</p>"
            + (f'<p class="note">{_e(layer["note"])}</p>' if layer["note"] else "")
            + f'<p class="note">Layer base (on top of the pipeline\'s): {base}. Reference variant: '
            f"<b>{_e(layer['reference'])}</b>. Common horizons for the areas: "
            f"{_fmt(ctx['round_horizon'])} rounds, {_fmt(ctx['rollout_horizon'])} rollouts.</p>"
            + _variants_list(layer)
            + _png_tag(png, layer["name"])
            + _metrics_table(layer)
            + _paired_table(layer)
            + _decomposition_table(layer)
            + _decomposition_figure(
                layer, curves[layer["name"]], figures / f"{i:02d}_{_safe(layer['name'])}_format.png"
            )
            + _saturation_table(layer)
            + "<h3>Findings</h3>"
            + _findings_table(layer["findings"])
            + multitask_block(
                layer, curves[layer["name"]], figures / f"{i:02d}_{_safe(layer['name'])}_tasks.png", _png_tag
            )
        )
        counterpart = counterparts.get(layer["name"])
        if bandit_data and counterpart in _bandit_layers(bandit_data):
            shown.setdefault(counterpart, layer["name"])
            sections.append(_bandit_block(bandit_data, counterpart))
    bandit_json, where = [], ""
    if bandit_data:
        rest = [b for b in _bandit_layers(bandit_data) if b not in shown]
        if rest:
            sections.append(
                '<h2 id="bandit-only">Bandit counterparts without an LLM layer here</h2>'
                + "".join(_bandit_block(bandit_data, b, "Bandit") for b in rest)
            )
        bandit_json = [{**f, "source": "bandit", "llm_layer": shown.get(f["layer"])} for f in bandit_data["findings"]]
        where = os.path.relpath(bandit_data["dir"], out)
    problems = result["problems"]
    problem_lines = sorted(
        {f"{p['layer']} / {p['variant']} ({p['model']}): {p.get('reason', p.get('status'))}" for p in problems}
    )
    opts = result["options"]
    caveat = quick_caveat(out, opts)
    if caveat:  # every verdict of a smoke test says so, in the tables and in findings.json
        result["findings"] = [{**f, "quick": True, "caveat": caveat} for f in result["findings"]]
        for layer in result["layers"]:
            layer["findings"] = [{**f, "quick": True, "caveat": caveat} for f in layer["findings"]]
    counts = {k: sum(f["verdict"] == k for f in result["findings"]) for k in ("agrees", "disagrees", "inconclusive")}
    header = (
        f"<h1>rftlab pipeline report: {_e(result['name'])}{' (quick)' if opts.get('quick') else ''}</h1>"
        f"<p>{_e(result['description'])}</p>"
        f'<p class="note">Seeds per variant: {_e(opts.get("seeds"))} (seed k of every variant uses seed=k, so '
        "comparisons are paired). Findings: "
        + ", ".join(f"{n} {k}" for k, n in counts.items())
        + ". Verdicts come from the stated rule on 95% percentile-bootstrap intervals over seeds "
        f"({n_boot} resamples, seeded); with fewer than 3 seeds every verdict is inconclusive.</p>"
        + (f'<p class="problem"><b>Smoke test only:</b> {_e(caveat)}.</p>' if caveat else "")
        + (
            '<p class="problem"><b>Runs missing from this report:</b><br>'
            + "<br>".join(map(_e, problem_lines))
            + "</p>"
            if problem_lines
            else ""
        )
        + "<p>Layers: "
        + " · ".join(f'<a href="#{_safe(x["name"])}">{_e(x["name"])}</a>' for x in result["layers"])
        + "</p>"
        + (_bandit_intro(bandit_data, where) if bandit_data else "")
        + "<h2>Findings of the paper vs our data</h2>"
        + _findings_table(result["findings"])
    )
    glossary = (
        "<h2>Metrics</h2><table>"
        + "".join(f"<tr><td><code>{_e(k)}</code></td><td>{_e(v)}</td></tr>" for k, v in METRIC_HELP.items())
        + '</table><p class="note">'
        + _e(analysis.__doc__.strip().split("\n\n")[1])
        + "</p>"
    )
    page = _page(f"rftlab report: {result['name']}", header + "".join(sections) + glossary)
    if bandit_data:
        result["bandit"] = {
            "dir": where,
            "scale": bandit_data.get("scale"),
            "seed": bandit_data.get("seed"),
            "findings": bandit_json,
        }
    write_atomic(out / ANALYSIS_FILE, json.dumps(result, indent=1) + "\n")
    llm_json = [{**f, "source": "llm"} for f in result["findings"]]
    write_atomic(out / FINDINGS_FILE, json.dumps(llm_json + bandit_json, indent=1) + "\n")
    write_atomic(out / REPORT_FILE, page)
    return out / REPORT_FILE


def quick_caveat(out: Path, options: dict) -> str | None:
    """The smoke-test caveat of a `--quick` sweep (seeds x rounds from its pipeline.json), else None."""
    if not options.get("quick"):
        return None
    quick = read_pipeline(out)["spec"].get("quick", {})
    rounds = quick.get("overrides", {}).get("train.rounds")
    return smoke_caveat(f"{options.get('seeds')} seeds x {rounds if rounds is not None else 'few'} rounds")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
