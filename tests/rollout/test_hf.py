"""The HF rollout engine: masks, determinism, and log-probs that match the sampling distribution."""

import torch

from rftlab.objectives import token_logp
from rftlab.policy import load_policy, response_logp
from rftlab.rollout import generate
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
    out = policy.model.generate(**enc, do_sample=True, top_k=0, temperature=0.7, max_new_tokens=24,
                                output_logits=True, return_dict_in_generate=True,
                                pad_token_id=tok.pad_token_id, eos_token_id=policy.eos_token_ids)  # fmt: skip
    response = out.sequences[:, enc["input_ids"].shape[1] :]
    sampled_logp = token_logp(torch.stack(out.logits, dim=1), response, temperature=0.7)
    mask = torch.ones_like(response)
    for row in range(response.shape[0]):  # stop at the first eos, like the engine
        hits = [t for t in range(response.shape[1]) if int(response[row, t]) in policy.eos_token_ids]
        if hits:
            mask[row, hits[0] + 1 :] = 0
    with torch.no_grad():
        logp, entropy = response_logp(policy, enc["input_ids"], enc["attention_mask"], response, mask,
                                      temperature=0.7, with_entropy=True)  # fmt: skip
    real = mask.bool()
    assert torch.allclose(logp[real], sampled_logp[real], atol=1e-4)
    assert (entropy[real] >= 0).all()
