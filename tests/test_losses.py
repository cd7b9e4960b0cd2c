"""Each loss against a computation by hand on tiny numbers."""

import math

import torch

from erase_diffusion import losses


def unit(*rows):
    t = torch.tensor(rows, dtype=torch.float64)
    return t / t.norm(dim=-1, keepdim=True)


def test_forget_loss_is_the_mean_pair_cosine():
    img = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    txt = torch.tensor([[4.0, 3.0], [0.0, 2.0]])
    # pair 1: (3*4 + 4*3) / (5*5) = 0.96; pair 2: 0
    assert math.isclose(losses.forget_loss(img, txt).item(), 0.48, rel_tol=1e-6)
    assert losses.forget_loss(img, -img).item() < -0.99  # anti-aligned pairs: minimum reached


def test_retain_loss_is_symmetric_infonce():
    img, txt = unit([1, 0], [0, 1]), unit([1, 0], [1, 1])
    s = 2.0
    logits = s * img @ txt.t()  # [[2, sqrt2], [0, sqrt2]]
    r2 = math.sqrt(2)
    i2t = 0.5 * (-(2 - math.log(math.exp(2) + math.exp(r2))) - (r2 - math.log(1 + math.exp(r2))))
    t2i = 0.5 * (-(2 - math.log(math.exp(2) + 1)) - (r2 - math.log(2 * math.exp(r2))))
    assert torch.allclose(logits, torch.tensor([[2, r2], [0, r2]], dtype=torch.float64))
    assert math.isclose(losses.retain_loss(img, txt, s).item(), 0.5 * (i2t + t2i), rel_tol=1e-9)


def test_consistency_loss_is_kl_original_to_unlearned_both_ways():
    orig = torch.tensor([[0.0, 1.0], [2.0, 0.0]], dtype=torch.float64)
    new = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)

    def kl_rows(a, b):
        p, q = a.softmax(-1), b.softmax(-1)
        return (p * (p / q).log()).sum(-1).mean().item()

    expected = kl_rows(orig, new) + kl_rows(orig.t(), new.t())
    assert math.isclose(losses.consistency_loss(orig, new).item(), expected, rel_tol=1e-9)
    assert losses.consistency_loss(orig, orig).item() == 0.0
    # KL(p_o || p_u) is not symmetric: the argument order matters and is the paper's.
    assert not math.isclose(losses.consistency_loss(new, orig).item(), expected, rel_tol=1e-3)


def test_token_terms_are_mean_squared_errors_and_total_weights_them():
    a, b = torch.zeros(2, 3, 4), torch.ones(2, 3, 4) * 2
    assert losses.token_preservation_loss(a, b).item() == 4.0
    assert losses.anchor_loss(b, a).item() == 4.0
    total, logged = losses.total_loss({"retain": torch.tensor(1.0), "forget": torch.tensor(0.5)},
                                      {"retain": 1.0, "forget": 3.0, "consistency": 3.0})
    assert total.item() == 2.5 and logged == {"retain": 1.0, "forget": 0.5}
