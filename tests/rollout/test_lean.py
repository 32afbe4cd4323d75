"""The lean engine: greedy outputs equal HF generate's, and sampling draws from the model's softmax."""

import math

import torch

from rftlab.policy import load_policy, response_logp
from rftlab.rollout import generate
from rftlab.rollout.lean import lean_generate
from rftlab.tasks.problem import Problem

QUESTIONS = [
    "Tom has 3 apples and buys 5 more. How many apples does he have now?",
    "What is 7 + 8?",
    "A box holds 4 pens. Sara buys 3 boxes and gives away 2 pens. How many pens are left?",
]


def prompts(policy):
    return [policy.prompt_text(Problem(str(i), q, "0", "t")) for i, q in enumerate(QUESTIONS)]


def chi_square_critical(dof: int, z: float = 3.09) -> float:
    """Upper 1e-3 quantile of chi-square(dof) by Wilson-Hilferty (z = 3.09 is the normal's 1e-3 quantile)."""
    a = 2.0 / (9.0 * dof)
    return dof * (1.0 - a + z * math.sqrt(a)) ** 3


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, int]:
    """Pearson's statistic over tokens expected >= 5 times, the rest lumped into one bin; (stat, dof)."""
    n = float(counts.sum())
    expected = probs.double() * n
    big = expected >= 5
    obs = torch.cat([counts[big].double(), counts[~big].double().sum()[None]])
    exp = torch.cat([expected[big], expected[~big].sum()[None]])
    keep = exp > 0
    stat = float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum())
    return stat, int(keep.sum()) - 1


def test_lean_greedy_equals_hf_greedy_with_padding_and_rows_finishing_early():
    policy = load_policy("tiny")
    kw = dict(samples_per_prompt=2, greedy=True, max_new_tokens=80, batch_size=4)
    hf = generate(policy, prompts(policy), engine="hf", **kw)
    lean = generate(policy, prompts(policy), engine="lean", **kw)
    lengths = hf.response_lengths
    assert len(set(lengths.tolist())) > 1  # rows finish at different steps: retirement is exercised
    assert torch.equal(hf.response_ids, lean.response_ids) and hf.texts == lean.texts
    assert torch.equal(hf.response_mask, lean.response_mask) and torch.equal(hf.truncated, lean.truncated)


def test_lean_sampled_logp_equals_the_loss_logp():
    """log pi of each sampled token (the warped logits the engine drew from) is the loss's, to 1e-4.

    The engine's log-probs come from transformers' temperature warper and a log-softmax, not from
    `token_logp`; test_hf checks the loss's log-probs against generate's own temperature-scaled
    scores, so a temperature bug on either side fails one of the two.
    """
    policy = load_policy("tiny")
    tok = policy.tokenizer
    enc = tok(prompts(policy) * 2, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(3)
    response, logp = lean_generate(
        policy.model,
        enc["input_ids"],
        enc["attention_mask"],
        greedy=False,
        temperature=0.7,
        top_p=1.0,
        max_new_tokens=48,
        eos_token_ids=policy.eos_token_ids,
        pad_token_id=tok.pad_token_id,
        with_logp=True,
    )
    is_eos = torch.isin(response, torch.tensor(policy.eos_token_ids))
    mask = ((is_eos.cumsum(-1) - is_eos.int()) == 0).long()  # up to and including the first eos
    assert not mask.all()  # some rows ended early and were retired
    with torch.no_grad():
        loss_logp, _ = response_logp(policy, enc["input_ids"], enc["attention_mask"], response, mask, temperature=0.7)
    real = mask.bool()
    assert torch.allclose(logp[real], loss_logp[real], atol=1e-4)
    assert (logp[~real] == 0).all() and (response[~real] == tok.pad_token_id).all()


def test_lean_sampling_matches_the_model_softmax_at_temperature_and_top_p():
    """Empirical first-token counts from 2000 samples fit softmax(logits / T) restricted to the nucleus.

    Chi-square at the 1e-3 level (deterministic: fixed seed). The same counts are far from the
    temperature-1 softmax, so the check would catch an ignored temperature.
    """
    policy = load_policy("tiny")
    tok = policy.tokenizer
    n, temperature, top_p = 2000, 1.5, 0.9
    enc = tok(["What is 7 + 8?\n"] * n, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        logits = policy.model(input_ids=enc["input_ids"][:1]).logits[0, -1].double()  # (V,)
    # nucleus: the most likely tokens until their mass reaches top_p (the token that crosses it included)
    probs = torch.softmax(logits / temperature, dim=-1)
    sorted_probs, order = probs.sort(descending=True)
    in_nucleus = torch.zeros_like(probs, dtype=torch.bool)
    in_nucleus[order[(sorted_probs.cumsum(0) - sorted_probs) < top_p]] = True
    expected = torch.where(in_nucleus, probs, 0.0)
    expected /= expected.sum()

    torch.manual_seed(0)
    tokens = lean_generate(
        policy.model,
        enc["input_ids"],
        enc["attention_mask"],
        greedy=False,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=1,
        eos_token_ids=policy.eos_token_ids,
        pad_token_id=tok.pad_token_id,
    )[:, 0]
    counts = torch.bincount(tokens, minlength=logits.shape[0])
    assert counts[~in_nucleus].sum() == 0
    stat, dof = chi_square(counts, expected)
    assert dof >= 5 and stat < chi_square_critical(dof)
    wrong_stat, wrong_dof = chi_square(counts, torch.softmax(logits, dim=-1))  # temperature ignored
    assert wrong_stat > 10 * chi_square_critical(wrong_dof)
