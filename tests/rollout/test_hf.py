"""The HF rollout engine: masks, determinism, and log-probs that match the sampling distribution."""

import pytest
import torch

from rftlab.errors import RftlabError
from rftlab.objectives import token_logp
from rftlab.policy import load_policy, response_logp
from rftlab.rollout import generate, hf
from rftlab.rollout.hf import _response_mask
from rftlab.tasks.problem import Problem

QUESTIONS = ["Tom has 3 apples and buys 5 more. How many apples does he have now?", "What is 7 + 8?"]


def prompts(policy):
    return [policy.prompt_text(Problem(str(i), q, "0", "t")) for i, q in enumerate(QUESTIONS)]


def test_rollout_shapes_masks_and_grouping():
    policy = load_policy("tiny")
    batch = generate(policy, prompts(policy), samples_per_prompt=3, max_new_tokens=40, seed=0)
    assert len(batch) == 6 and batch.prompt_index == [0, 0, 0, 1, 1, 1]
    # left-padded prompts: the shorter prompt has leading zeros in its mask
    assert batch.prompt_mask[:, -1].all() and not batch.prompt_mask[3:, 0].all()
    for row, text in zip(range(6), batch.texts, strict=True):
        length = int(batch.response_mask[row].sum())
        assert batch.response_mask[row, :length].all() and not batch.response_mask[row, length:].any()
        if not batch.truncated[row]:
            assert int(batch.response_ids[row, length - 1]) in policy.eos_token_ids  # eos is a response token
        assert isinstance(text, str)


def test_same_seed_same_rollouts():
    policy = load_policy("tiny")
    a = generate(policy, prompts(policy), samples_per_prompt=2, max_new_tokens=32, seed=5)
    b = generate(policy, prompts(policy), samples_per_prompt=2, max_new_tokens=32, seed=5)
    c = generate(policy, prompts(policy), samples_per_prompt=2, max_new_tokens=32, seed=6)
    assert a.texts == b.texts and torch.equal(a.response_ids, b.response_ids)
    assert a.texts != c.texts


def test_training_logp_equals_the_sampling_logp_under_left_padding():
    """The loss's log-probs (full forward, left padding, explicit positions) are generate's own."""
    policy = load_policy("tiny")
    tok = policy.tokenizer
    enc = tok(prompts(policy), return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(0)
    out = policy.model.generate(
        **enc,
        do_sample=True,
        top_k=0,
        temperature=0.7,
        max_new_tokens=24,
        output_logits=True,
        return_dict_in_generate=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=policy.eos_token_ids,
    )
    response = out.sequences[:, enc["input_ids"].shape[1] :]
    sampled_logp = token_logp(torch.stack(out.logits, dim=1), response, temperature=0.7)
    mask = torch.ones_like(response)
    for row in range(response.shape[0]):  # stop at the first eos, like the engine
        hits = [t for t in range(response.shape[1]) if int(response[row, t]) in policy.eos_token_ids]
        if hits:
            mask[row, hits[0] + 1 :] = 0
    with torch.no_grad():
        logp, entropy = response_logp(
            policy, enc["input_ids"], enc["attention_mask"], response, mask, temperature=0.7, with_entropy=True
        )
    real = mask.bool()
    assert torch.allclose(logp[real], sampled_logp[real], atol=1e-4)
    assert (entropy[real] >= 0).all()


def test_training_logp_equals_generates_temperature_scaled_scores():
    """The loss's log-probs equal log-softmax of generate's own processed scores (`output_scores`).

    Independent of `token_logp`: the scores are transformers' temperature-warped logits, so a
    temperature bug in the loss's log-probs cannot cancel out.
    """
    policy = load_policy("tiny")
    tok = policy.tokenizer
    enc = tok(prompts(policy), return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(1)
    out = policy.model.generate(
        **enc,
        do_sample=True,
        top_k=0,
        temperature=0.7,
        max_new_tokens=24,
        output_scores=True,
        return_dict_in_generate=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=policy.eos_token_ids,
    )
    response = out.sequences[:, enc["input_ids"].shape[1] :]
    scores = torch.log_softmax(torch.stack(out.scores, dim=1), dim=-1)  # (N, T, V), already / temperature
    sampled_logp = scores.gather(-1, response.unsqueeze(-1)).squeeze(-1)
    mask, _ = _response_mask(response, policy.eos_token_ids)
    with torch.no_grad():
        logp, _ = response_logp(policy, enc["input_ids"], enc["attention_mask"], response, mask, temperature=0.7)
    real = mask.bool()
    assert torch.allclose(logp[real], sampled_logp[real], atol=1e-4)
    # and at temperature 1 the scores would differ: the check has power against a dropped temperature
    logp_t1, _ = response_logp(policy, enc["input_ids"], enc["attention_mask"], response, mask, temperature=1.0)
    assert not torch.allclose(logp_t1[real], sampled_logp[real], atol=1e-2)


MIXED = [
    "Tom has 3 apples and buys 5 more. How many apples does he have now?",
    "What is 7 + 8?",
    "A box holds 4 pens. Sara buys 3 boxes and gives away 2 pens. How many pens are left after that?",
    "What is 2 + 2?",
    "Ann had 9 cards and lost 4. How many cards does she have?",
]


def mixed_prompts(policy):
    return [policy.prompt_text(Problem(str(i), q, "0", "t")) for i, q in enumerate(MIXED)]


def assert_same_batch(a, b):
    assert a.texts == b.texts and a.prompt_index == b.prompt_index
    for name in ["prompt_ids", "prompt_mask", "response_ids", "response_mask", "truncated"]:
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_sorting_by_prompt_length_returns_rows_in_order_and_keeps_greedy_results():
    policy = load_policy("tiny")
    kw = dict(greedy=True, max_new_tokens=40, batch_size=2)
    plain = generate(policy, mixed_prompts(policy), **kw)
    ordered = generate(policy, mixed_prompts(policy), sort_by_length=True, **kw)
    assert_same_batch(plain, ordered)
    # sampled: each row still answers its own prompt, samples of a prompt stay grouped
    sampled = generate(
        policy, mixed_prompts(policy), samples_per_prompt=2, max_new_tokens=16, batch_size=3, sort_by_length=True
    )
    assert sampled.prompt_index == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    decoded = policy.tokenizer.batch_decode(
        sampled.prompt_ids.masked_fill(sampled.prompt_mask == 0, 0), skip_special_tokens=True
    )
    for row, i in enumerate(sampled.prompt_index):
        assert MIXED[i] in decoded[row]


def fake_oom_above(monkeypatch, policy, k):
    """Make model.generate raise CUDA out-of-memory for batches of more than k rows; record sizes."""
    sizes = []
    real = policy.model.generate

    def generate_or_oom(*args, **kwargs):
        sizes.append(kwargs["input_ids"].shape[0])
        if sizes[-1] > k:
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")
        return real(*args, **kwargs)

    monkeypatch.setattr(policy.model, "generate", generate_or_oom)
    monkeypatch.setattr(hf, "_halved_warned", False)
    return sizes


def test_out_of_memory_halves_the_batch_and_keeps_results(monkeypatch, caplog):
    policy = load_policy("tiny")
    prompts_ = mixed_prompts(policy)
    greedy_plain = generate(policy, prompts_, greedy=True, max_new_tokens=32, batch_size=5)
    sampled_at_2 = generate(policy, prompts_, samples_per_prompt=2, max_new_tokens=24, seed=4, batch_size=2)
    sizes = fake_oom_above(monkeypatch, policy, 2)
    with caplog.at_level("WARNING", logger="rftlab.rollout.hf"):
        greedy_split = generate(policy, prompts_, greedy=True, max_new_tokens=32, batch_size=5)
        assert sizes == [5, 2, 2, 1]  # 5 fails, 2 fits and stays the size: 2 + 2 + 1
        assert_same_batch(greedy_plain, greedy_split)
        # sampled: each retry starts from the random state of the failed batch, so halving 8 -> 4 -> 2
        # gives exactly the run made at 2 rows per batch
        sampled_split = generate(policy, prompts_, samples_per_prompt=2, max_new_tokens=24, seed=4, batch_size=8)
    assert_same_batch(sampled_at_2, sampled_split)
    halving = [r for r in caplog.records if "out of device memory" in r.getMessage()]
    assert len(halving) == 1 and "eval.batch_size" in halving[0].getMessage()


def test_out_of_memory_at_one_row_is_a_one_line_error(monkeypatch):
    policy = load_policy("tiny")
    fake_oom_above(monkeypatch, policy, 0)
    with pytest.raises(RftlabError, match="eval.batch_size") as err:
        generate(policy, mixed_prompts(policy)[:3], greedy=True, max_new_tokens=8, batch_size=4)
    assert "\n" not in str(err.value)


def test_unknown_engine_is_refused():
    policy = load_policy("tiny")
    with pytest.raises(ValueError, match="hf, lean"):
        generate(policy, mixed_prompts(policy)[:1], engine="vllm")
