"""The paper's findings as testable claims, and verdicts decided by a stated rule on intervals.

A layer of a pipeline spec lists claims, each a finding of the paper turned into a statement about
one metric (`rftlab.pipeline.analysis.METRICS`):

    - finding: GRPO's advantage gives no better test Pass@1
      metric: test_final
      compare: paired        # paired: variant - reference, paired by seed; value: the variant's own;
                             # ratio: mean(variant) / mean(reference) over shared seeds (a per-run
                             # metric; "how much of the reference's gain does the variant reproduce")
      variants: [grpo]       # default: every variant but the reference (paired) / every variant (value)
      rule: at_most          # gt | lt | at_most | differs
      threshold: 0.02
      combine: each          # each: a verdict per variant; any / all: one verdict over the variants
      reference: add         # optional: compare with this variant instead of the layer's reference
    - finding: ...
      all_of: [{metric: ..., compare: ..., rule: ..., threshold: ...}, ...]   # every condition must hold

Rules, on the 95% bootstrap interval [low, high] of the statistic, are those of the verdict engine
`rftlab.verdicts` (which the bandit lab's findings use too), e.g.:
- gt t:      agrees if low > t;  disagrees if high <= t;  else inconclusive.
- lt t:      agrees if high < t; disagrees if low >= t;   else inconclusive.
- at_most d: ("no more than d above", e.g. "no better"): agrees if high <= d; disagrees if low > 0
             (significantly above 0 and not ruled below d); else inconclusive.
- differs d: agrees if the interval excludes 0; disagrees if it lies within [-d, d]; else inconclusive.
- above / below / at_least t: see rftlab.verdicts.
- Fewer than MIN_SEEDS seeds (or no finite value): inconclusive.
- all_of: agrees if every condition agrees, disagrees if any disagrees, else inconclusive.
- combine any: agrees if some variant agrees, disagrees if every variant disagrees;
  combine all: agrees if every variant agrees, disagrees if some variant disagrees.
"""

from __future__ import annotations

from collections.abc import Sequence

from rftlab.config import ConfigError
from rftlab.pipeline import analysis
from rftlab.pipeline.analysis import Context, Estimate, RunCurve
from rftlab.verdicts import MIN_SEEDS, RULES, VERDICTS, combine_all, combine_any, verdict

__all__ = [
    "MIN_SEEDS",
    "RULES",
    "VERDICTS",
    "combine_all",
    "combine_any",
    "evaluate_claims",
    "rule_text",
    "validate_claim",
    "verdict",
]

COMPARES = ("value", "paired", "ratio")
WITH_REFERENCE = ("paired", "ratio")  # compares that read the reference variant
COMBINES = ("each", "any", "all")
CLAIM_KEYS = (
    "finding",
    "says",
    "metric",
    "compare",
    "variants",
    "rule",
    "threshold",
    "combine",
    "all_of",
    "reference",
)
CONDITION_KEYS = ("metric", "compare", "rule", "threshold")

RULE_TEXT = {
    "gt": "agrees if the 95% interval lies above {t}; disagrees if it lies at or below {t}; else inconclusive",
    "lt": "agrees if the 95% interval lies below {t}; disagrees if it lies at or above {t}; else inconclusive",
    "at_most": "agrees if the 95% interval's upper end is <= {t}; disagrees if its lower end is > 0; else inconclusive",
    "differs": "agrees if the 95% interval excludes 0; disagrees if it lies within [-{t}, {t}]; else inconclusive",
    "above": "agrees if the 95% interval lies above {t}; disagrees if it lies below {t}; else inconclusive",
    "below": "agrees if the 95% interval lies below {t}; disagrees if it lies above {t}; else inconclusive",
    "at_least": "agrees if the 95% interval lies at or above {t}; disagrees if it lies below {t}; else inconclusive",
}


# ----------------------------------------------------------------------------- validation


def _check_condition(where: str, cond: dict, keys: tuple[str, ...]) -> None:
    if not isinstance(cond, dict):
        raise ConfigError(f"{where}: expected a mapping")
    for key in cond:
        if key not in keys:
            raise ConfigError(f"unknown pipeline key {where}.{key}; valid keys: {', '.join(keys)}")
    metric = cond.get("metric")
    if metric not in analysis.METRICS:
        raise ConfigError(f"{where}.metric={metric!r} is not allowed; choose one of: {', '.join(analysis.METRICS)}")
    if cond.get("compare", "paired") not in COMPARES:
        raise ConfigError(
            f"{where}.compare={cond.get('compare')!r} is not allowed; choose one of: {', '.join(COMPARES)}"
        )
    if cond.get("compare") == "ratio" and analysis.metric_kind(metric) != "seed":
        raise ConfigError(f"{where}: compare ratio needs a per-run metric; {metric!r} is a variant-level one")
    if cond.get("rule") not in RULES:
        raise ConfigError(f"{where}.rule={cond.get('rule')!r} is not allowed; choose one of: {', '.join(RULES)}")
    threshold = cond.get("threshold", 0.0)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ConfigError(f"{where}.threshold={threshold!r}: expected a number")


def validate_claim(where: str, claim: dict, variants: list[str], reference: str) -> None:
    if not isinstance(claim, dict):
        raise ConfigError(f"{where}: expected a mapping")
    for key in claim:
        if key not in CLAIM_KEYS:
            raise ConfigError(f"unknown pipeline key {where}.{key}; valid keys: {', '.join(CLAIM_KEYS)}")
    if not isinstance(claim.get("finding"), str) or not claim["finding"]:
        raise ConfigError(f"{where}.finding: every claim needs the paper's finding as text")
    conditions = claim.get("all_of")
    if conditions is not None:
        if not isinstance(conditions, list) or not conditions:
            raise ConfigError(f"{where}.all_of: expected a non-empty list of conditions")
        for i, cond in enumerate(conditions):
            _check_condition(f"{where}.all_of[{i}]", cond, CONDITION_KEYS)
        if any(k in claim for k in CONDITION_KEYS):
            raise ConfigError(f"{where}: give either all_of or metric/compare/rule/threshold, not both")
    else:
        _check_condition(where, claim, CLAIM_KEYS)
    if "reference" in claim:
        if claim["reference"] not in variants:
            raise ConfigError(
                f"{where}.reference={claim['reference']!r} is not a variant of this layer ({', '.join(variants)})"
            )
        reference = claim["reference"]
    for name in claim.get("variants") or []:
        if name not in variants:
            raise ConfigError(f"{where}.variants: {name!r} is not a variant of this layer ({', '.join(variants)})")
    paired = any(c.get("compare", "paired") in WITH_REFERENCE for c in (conditions or [claim]))
    if paired and reference in (claim.get("variants") or []):
        raise ConfigError(f"{where}.variants: the reference {reference!r} cannot be compared with itself")
    if claim.get("combine", "each") not in COMBINES:
        raise ConfigError(
            f"{where}.combine={claim.get('combine')!r} is not allowed; choose one of: {', '.join(COMBINES)}"
        )


# ----------------------------------------------------------------------------- verdicts


def rule_text(claim: dict) -> str:
    conds = claim.get("all_of") or [claim]
    parts = []
    for c in conds:
        subject = {
            "paired": f"{c['metric']} (variant - reference, paired by seed)",
            "ratio": f"{c['metric']} (mean variant / mean reference over shared seeds, pairs resampled together; "
            "n/a unless the reference's own 95% interval lies above 0)",
        }.get(c.get("compare", "paired"), f"{c['metric']} (the variant's own)")
        parts.append(f"{subject}: " + RULE_TEXT[c["rule"]].format(t=c.get("threshold", 0.0)))
    text = "; and ".join(parts)
    if len(conds) > 1:
        text += " (all conditions must agree; any disagreeing condition -> disagrees)"
    combine = claim.get("combine", "each")
    if combine == "any":
        text += "; over variants: agrees if any variant agrees, disagrees if all disagree"
    elif combine == "all":
        text += "; over variants: agrees if all agree, disagrees if any disagrees"
    return text + f"; fewer than {MIN_SEEDS} seeds -> inconclusive"


def _describe(metric: str, compare: str, variant: str, reference: str, est: Estimate) -> str:
    def f(x):
        return "n/a" if x != x else f"{x:+.3f}" if compare == "paired" else f"{x:.3f}"

    what = {"paired": f"{variant} - {reference}", "ratio": f"{variant} / {reference}"}.get(compare, variant)
    return f"{metric} [{what}] = {f(est.value)} [{f(est.low)}, {f(est.high)}] (n={est.n})"


def evaluate_claims(
    layer: str,
    claims: Sequence[dict],
    groups: dict[str, Sequence[RunCurve]],
    reference: str,
    ctx: Context,
    *,
    n_boot: int = analysis.BOOTSTRAP,
) -> list[dict]:
    """One findings.json entry per (claim, variant) -- or per claim with combine any/all."""
    out = []
    layer_reference = reference
    for claim in claims:
        reference = claim.get("reference", layer_reference)  # a claim may name its own
        conds = claim.get("all_of") or [claim]
        uses_paired = any(c.get("compare", "paired") in WITH_REFERENCE for c in conds)
        names = claim.get("variants") or [v for v in groups if not (uses_paired and v == reference)]
        rows = []
        for name in names:
            curves = groups.get(name) or []
            numbers, verdicts = [], []
            for c in conds:
                compare = c.get("compare", "paired")
                if not curves or (compare in WITH_REFERENCE and not groups.get(reference)):
                    est = Estimate(float("nan"), float("nan"), float("nan"), 0)
                elif compare == "ratio":
                    est = analysis.paired_ratio(curves, groups[reference], c["metric"], ctx, n_boot=n_boot)
                elif compare == "paired":
                    est = analysis.paired_difference(curves, groups[reference], c["metric"], ctx, n_boot=n_boot)
                else:
                    est = analysis.estimate(curves, c["metric"], ctx, n_boot=n_boot)
                v = verdict(c["rule"], c.get("threshold", 0.0), est)
                verdicts.append(v)
                numbers.append(
                    {
                        "variant": name,
                        "reference": reference if compare in WITH_REFERENCE else None,
                        "metric": c["metric"],
                        "compare": compare,
                        "rule": c["rule"],
                        "threshold": c.get("threshold", 0.0),
                        **est.as_dict(),
                        "verdict": v,
                        "text": _describe(c["metric"], compare, name, reference, est),
                    }
                )
            rows.append(
                {
                    "variant": name,
                    "verdict": combine_all(verdicts) if len(conds) > 1 else verdicts[0],
                    "numbers": numbers,
                    "available": bool(curves),
                }
            )
        base = {
            "layer": layer,
            "finding": claim["finding"],
            "says": claim.get("says", ""),
            "rule": rule_text(claim),
        }
        combine = claim.get("combine", "each")
        if combine == "each":
            for row in rows:
                out.append(
                    {
                        **base,
                        "variant": row["variant"],
                        "verdict": row["verdict"],
                        "numbers": row["numbers"],
                        "ours": _ours(row["verdict"], row["numbers"]),
                    }
                )
        else:
            verdicts = [r["verdict"] for r in rows if r["available"]]
            v = combine_any(verdicts) if combine == "any" else combine_all(verdicts)
            numbers = [n for r in rows for n in r["numbers"]]
            out.append(
                {
                    **base,
                    "variant": ", ".join(names),
                    "verdict": v,
                    "numbers": numbers,
                    "per_variant": {r["variant"]: r["verdict"] for r in rows},
                    "ours": _ours(v, numbers),
                }
            )
    return out


def _ours(v: str, numbers: list[dict]) -> str:
    """One line of what our data says, built from the numbers (never hand-written)."""
    lead = {"agrees": "our data agree", "disagrees": "our data disagree", "inconclusive": "inconclusive"}[v]
    return f"{lead}: " + "; ".join(n["text"] for n in numbers)
