"""`nbkit.evaluate.retrieval_metrics` on hand-made similarity matrices: ranks in both
directions, ties, median rank, rSum, class-level relevance, and clear errors."""
import numpy as np
import pytest
import torch

from nbkit.evaluate import retrieval_metrics

# rows = queries of a, columns = items of b; the true partner of row i is column i
S = torch.tensor([
    [0.9, 0.1, 0.2, 0.0],   # a0: partner b0 first                        -> rank 1
    [0.8, 0.5, 0.1, 0.7],   # a1: b0 0.8 and b3 0.7 beat b1 0.5            -> rank 3
    [0.3, 0.2, 0.4, 0.1],   # a2: partner first                             -> rank 1
    [0.6, 0.9, 0.8, 0.2],   # a3: b0, b1, b2 all beat b3                    -> rank 4
])
# by hand: a->b ranks [1, 3, 1, 4]; b->a (columns of S) ranks:
#   b0 column [0.9, 0.8, 0.3, 0.6]: partner a0 first -> 1
#   b1 column [0.1, 0.5, 0.2, 0.9]: a3 0.9 beats a1 0.5 -> 2
#   b2 column [0.2, 0.1, 0.4, 0.8]: a3 0.8 beats a2 0.4 -> 2
#   b3 column [0.0, 0.7, 0.1, 0.2]: a1 0.7 beats a3 0.2 -> 2


def _m(S, **kw):
    return retrieval_metrics(S, None, similarity="precomputed", names=("img", "txt"), **kw)


def test_recall_at_k_both_directions_by_hand():
    m = _m(S, ks=(1, 2, 3))
    assert m["img->txt R@1"] == pytest.approx(50.0)       # ranks 1, 3, 1, 4
    assert m["img->txt R@2"] == pytest.approx(50.0)
    assert m["img->txt R@3"] == pytest.approx(75.0)
    assert m["txt->img R@1"] == pytest.approx(25.0)       # ranks 1, 2, 2, 2
    assert m["txt->img R@2"] == pytest.approx(100.0)
    assert m["img->txt meanr"] == pytest.approx(9 / 4)
    assert m["txt->img meanr"] == pytest.approx(7 / 4)
    assert m["rsum"] == pytest.approx(50 + 50 + 75 + 25 + 100 + 100)


def test_median_rank_averages_the_two_middle_ranks_then_floors():
    # a->b ranks [1, 3, 1, 4]: sorted 1, 1, 3, 4 -> median 2.0 -> medr 2 (a lower median would say 1)
    m = _m(S, ks=(1,))
    assert m["img->txt medr"] == 2.0
    # b->a ranks [1, 2, 2, 2] -> median 2
    assert m["txt->img medr"] == 2.0
    # ranks 1 and 4 only (N=2 would be too small to vary; use a 4x4 with ranks 1, 1, 4, 4)
    T = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0.5, 0.6, 0.1, 0.7], [0.5, 0.6, 0.7, 0.1]])
    # row 2: partner 0.1 is the lowest -> rank 4; row 3 likewise -> rank 4
    assert _m(T)["img->txt medr"] == 2.0                  # median of 1, 1, 4, 4 = 2.5 -> floor 2


def test_matches_the_vsepp_reference_formula_without_ties():
    """VSE++ (github.com/fartashf/vsepp, evaluation.py, one caption per image): 0-based rank
    r0 = position of the partner in the argsort of the query's scores, descending; R@k =
    100 * mean(r0 < k); medr = floor(median(r0)) + 1; meanr = mean(r0) + 1. Written out here
    from reading it, on a random matrix (no ties almost surely)."""
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(37, 37))
    sim[np.arange(37), np.arange(37)] += 1.0
    got = _m(torch.from_numpy(sim), ks=(1, 5, 10))
    for name, M in (("img->txt", sim), ("txt->img", sim.T)):
        r0 = np.array([np.where(np.argsort(M[i])[::-1] == i)[0][0] for i in range(len(M))])
        for k in (1, 5, 10):
            assert got[f"{name} R@{k}"] == pytest.approx(100.0 * np.mean(r0 < k))
        assert got[f"{name} medr"] == np.floor(np.median(r0)) + 1
        assert got[f"{name} meanr"] == pytest.approx(r0.mean() + 1)


def test_ties_count_against_the_query():
    const = torch.ones(5, 5)
    m = _m(const, ks=(1, 5))
    assert m["img->txt R@1"] == 0.0 and m["img->txt R@5"] == 100.0
    assert m["img->txt medr"] == 5.0 and m["txt->img medr"] == 5.0
    # a single tie with the partner: rank 2, not 1
    T = torch.eye(3)
    T[0, 1] = 1.0
    m = _m(T, ks=(1,))
    assert m["img->txt R@1"] == pytest.approx(200 / 3)    # row 0 tied -> rank 2; rows 1, 2 rank 1
    assert m["txt->img R@1"] == pytest.approx(200 / 3)    # column 1: a0 ties a1 -> rank 2


def test_perfect_and_reversed_retrieval():
    n = 20
    m = _m(torch.eye(n), ks=(1, 5, 10))
    assert m["rsum"] == pytest.approx(600.0) and m["img->txt medr"] == 1.0
    # the partner always scores lowest: rank n for everyone
    m = _m(-torch.eye(n), ks=(1, 5, 10))
    assert m["rsum"] == 0.0 and m["img->txt medr"] == n and m["txt->img meanr"] == n


def test_embeddings_cosine_and_dot_agree_with_precomputed():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(30, 8, generator=g), torch.randn(30, 8, generator=g)
    b = a + 0.5 * b
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    assert retrieval_metrics(a, b) == retrieval_metrics(an @ bn.T, None, similarity="precomputed")
    assert retrieval_metrics(a, b, similarity="dot") == retrieval_metrics(a @ b.T, None, similarity="precomputed")
    # cosine ignores the scale of each row, the dot product does not
    scale = torch.linspace(0.1, 10, 30)[:, None]
    assert retrieval_metrics(a * scale, b) == retrieval_metrics(a, b)
    assert retrieval_metrics(a, b * scale, similarity="dot") != retrieval_metrics(a, b, similarity="dot")


def test_swapping_the_modalities_swaps_the_directions():
    g = torch.Generator().manual_seed(1)
    M = torch.randn(25, 25, generator=g) + 2 * torch.eye(25)
    m, t = _m(M), retrieval_metrics(M.T, None, similarity="precomputed", names=("txt", "img"))
    for k in ("R@1", "R@5", "R@10", "medr", "meanr"):
        assert m[f"img->txt {k}"] == t[f"img->txt {k}"] and m[f"txt->img {k}"] == t[f"txt->img {k}"]
    assert m["rsum"] == t["rsum"]


def test_class_level_relevance_by_hand():
    labels = torch.tensor([0, 0, 1, 1])
    # a1's partner b1 ranks 3rd, but b0 (same class 0) ranks 1st -> class-level rank 1
    m = _m(S, ks=(1,), labels=labels)
    # a->b: a0 best b0 (class 0) -> 1; a1 best b0 -> 1; a2 (class 1): scores b2 0.4, b3 0.1 vs
    #   irrelevant b0 0.3, b1 0.2 -> best relevant 0.4 first -> 1; a3: b2 0.8 is beaten by b1 0.9 -> 2
    assert m["img->txt R@1"] == pytest.approx(75.0)
    assert m["img->txt medr"] == 1.0
    # b->a: b0 column: relevant a0 0.9 first -> 1; b1: relevant a0 0.1, a1 0.5 vs a3 0.9, a2 0.2 -> 2;
    #   b2: relevant a2 0.4, a3 0.8 -> 1; b3: relevant a3 0.2 (a2 0.1) vs a1 0.7 -> 2
    assert m["txt->img R@1"] == pytest.approx(50.0)
    # one class for everybody: every query hits at rank 1
    assert _m(S, ks=(1,), labels=torch.zeros(4, dtype=torch.long))["rsum"] == pytest.approx(200.0)
    # distinct labels reduce to instance retrieval
    assert _m(S, labels=torch.arange(4)) == _m(S)


def test_clear_errors():
    with pytest.raises(ValueError, match="similarity must be one of"):
        retrieval_metrics(S, S, similarity="euclid")
    with pytest.raises(ValueError, match="square"):
        retrieval_metrics(torch.ones(3, 4), None, similarity="precomputed")
    with pytest.raises(ValueError, match="same shape"):
        retrieval_metrics(torch.ones(3, 4), torch.ones(3, 5))
    with pytest.raises(ValueError, match="at least 2"):
        retrieval_metrics(torch.ones(1, 4), torch.ones(1, 4))
    bad = S.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="a must be finite"):
        retrieval_metrics(bad, None, similarity="precomputed")
    with pytest.raises(ValueError, match="b must be finite"):
        retrieval_metrics(torch.ones(3, 2), torch.tensor([[1.0, 2], [float("inf"), 0], [1, 1]]))
    with pytest.raises(ValueError, match=r"ks\[i\] must be an integer >= 1"):
        retrieval_metrics(S, None, similarity="precomputed", ks=(0,))
    with pytest.raises(ValueError, match="ks must hold"):
        retrieval_metrics(S, None, similarity="precomputed", ks=())
    with pytest.raises(ValueError, match="labels must be"):
        retrieval_metrics(S, None, similarity="precomputed", labels=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="names must be a pair"):
        retrieval_metrics(S, None, similarity="precomputed", names="ab")
