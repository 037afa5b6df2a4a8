"""Student surgery: grouping, low rank, layer selection, embedding factorization, permutations."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from squeezebert.config import PROJECTIONS, preset
from squeezebert.model import GroupedLinear, LowRankLinear, SqueezeBert
from squeezebert.surgery import (
    LOW_RANK_PROJECTIONS,
    SQUEEZEBERT_GROUPS,
    InputStats,
    StudentSpec,
    balanced_assignment,
    build_student,
    collect_input_stats,
    group_weight,
    low_rank_factors,
    permute_ffn_neurons,
    permute_for_groups,
    permute_heads,
    rank_for_energy,
)

DENSE = {f"{p}": 1 for p in PROJECTIONS}
DENSE_CFG = dict(q_groups=1, k_groups=1, v_groups=1, post_attention_groups=1, intermediate_groups=1, output_groups=1)


@pytest.fixture
def teacher() -> SqueezeBert:
    torch.manual_seed(0)
    model = SqueezeBert(preset("tiny", num_labels=2, num_hidden_layers=3, **DENSE_CFG))
    for p in model.encoder.parameters():  # larger weights than the 0.02 init: attention matters
        if p.dim() == 2:
            torch.nn.init.normal_(p, std=0.15)
    return model.eval()


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 2000, (16, 12))
    mask = torch.ones_like(ids)
    mask[:4, 8:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def correlated_inputs(n: int = 4000, dim: int = 32) -> tuple[torch.Tensor, InputStats]:
    x = torch.randn(n, dim) @ torch.randn(dim, dim) + 0.3
    xd = x.double()
    return x, InputStats(n, xd.mean(0), xd.T @ xd / n)


def test_groups_one_is_an_exact_copy(teacher, batch) -> None:
    student, report = build_student(teacher, StudentSpec(groups=dict(DENSE)), collect_input_stats(teacher, [batch]))
    with torch.no_grad():
        assert torch.equal(student(**batch), teacher(**batch))
    assert all(r.total_error == 0 for r in report.rows)


def test_full_rank_reproduces_the_dense_layer() -> None:
    w = torch.randn(24, 16)
    x, stats = correlated_inputs(dim=16)
    for cov in (None, stats.cov):
        up, down = low_rank_factors(w, 16, cov)
        assert_close(up @ down, w, rtol=1e-4, atol=1e-4)


def test_reconstruction_error_falls_as_rank_rises() -> None:
    w = torch.randn(48, 32)
    x, stats = correlated_inputs()
    errors = []
    for r in (2, 4, 8, 16, 32):
        up, down = low_rank_factors(w, r, stats.cov)
        errors.append(((x @ (w - up @ down).T).norm() / (x @ w.T).norm()).item())
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-4


def test_activation_aware_svd_beats_plain_svd_on_outputs() -> None:
    w = torch.randn(48, 32)
    x, stats = correlated_inputs()
    aware = low_rank_factors(w, 8, stats.cov)
    plain = low_rank_factors(w, 8)
    err = [((x @ (w - u @ d).T).norm() / (x @ w.T).norm()).item() for u, d in (aware, plain)]
    assert err[0] < err[1]


def test_least_squares_grouping_beats_keeping_blocks() -> None:
    w, b = torch.randn(48, 32), torch.randn(48)
    x, stats = correlated_inputs()
    ref = x @ w.T + b
    errs = {}
    for method in ("block", "lsq"):
        wg, bg = group_weight(w, b, 4, stats, method)
        layer = GroupedLinear(32, 48, 4)
        with torch.no_grad():
            layer.weight.copy_(wg)
            layer.bias.copy_(bg)
            errs[method] = ((layer(x) - ref).norm() / ref.norm()).item()
    assert errs["lsq"] < errs["block"]


def test_rank_for_energy_is_monotone_and_exact_at_one() -> None:
    w = torch.randn(40, 30)
    ranks = [rank_for_energy(w, e) for e in (0.5, 0.8, 0.95, 1.0)]
    assert ranks == sorted(ranks) and ranks[-1] == 30


def test_parameter_budget_is_met(teacher, batch) -> None:
    budget = 1_045_000  # between rank 1 everywhere (1,022,018) and no rank (1,064,642)
    student, _ = build_student(
        teacher, StudentSpec(param_budget=budget, embedding_size=32), collect_input_stats(teacher, [batch])
    )
    n = student.num_parameters()
    assert n <= budget
    assert student.config.ranks  # the budget forced factorization
    assert n > 1_022_018  # and was used, not undershot down to rank 1


def test_impossible_budget_says_what_to_change(teacher) -> None:
    with pytest.raises(ValueError, match="drop layers or factorize the embeddings"):
        build_student(teacher, StudentSpec(param_budget=1000))


def test_layer_selection_keeps_the_chosen_layers(teacher, batch) -> None:
    student, report = build_student(teacher, StudentSpec(groups=dict(DENSE), layers=[0, 2]))
    assert student.config.num_hidden_layers == 2 and report.teacher_layers == [0, 2]
    assert torch.equal(
        student.encoder.layers[1].intermediate.conv1d.weight, teacher.encoder.layers[2].intermediate.conv1d.weight
    )


def test_grouped_low_rank_student_has_the_asked_shapes_and_reports_each_step(teacher, batch) -> None:
    stats = collect_input_stats(teacher, [batch])
    student, report = build_student(teacher, StudentSpec(ranks={"intermediate": 4}), stats)
    inter = student.encoder.layers[0].intermediate.conv1d
    assert isinstance(inter, LowRankLinear) and inter.groups == 4 and inter.rank == 4
    assert isinstance(student.encoder.layers[0].attention.query, GroupedLinear)
    rows = [r for r in report.rows if r.projection == "intermediate"]
    assert len(rows) == 3 and all(r.total_error >= r.group_error > 0 for r in rows)
    assert all(r.basis == "output" for r in report.rows)
    assert "error after rank" in report.table()


def test_factorized_embeddings_are_exact_for_a_low_rank_table(teacher, batch) -> None:
    with torch.no_grad():  # make the teacher's word table exactly rank 16
        table = teacher.embeddings.word_embeddings.weight
        table.copy_(torch.randn(table.shape[0], 16) @ torch.randn(16, 64) * 0.1)
    student, report = build_student(teacher, StudentSpec(groups=dict(DENSE), embedding_size=16))
    assert student.embeddings.word_embeddings.weight.shape == (30522, 16)
    assert report.embedding_error < 1e-5
    with torch.no_grad():
        assert_close(student(**batch), teacher(**batch), rtol=1e-4, atol=1e-4)
    _, lossy = build_student(teacher, StudentSpec(groups=dict(DENSE), embedding_size=8))
    assert lossy.embedding_error > 0.1


def test_permutations_leave_a_dense_model_unchanged(teacher, batch) -> None:
    with torch.no_grad():
        before = teacher(**batch)
        permute_ffn_neurons(teacher, 0, torch.randperm(256))
        permute_heads(teacher, 1, torch.randperm(4))
        permute_for_groups(teacher, {"query": 4, "key": 4, "value": 4, "intermediate": 4, "output": 4}, None)
        assert_close(teacher(**batch), before, rtol=1e-5, atol=1e-5)


def test_balanced_assignment_fills_groups_equally() -> None:
    score = torch.rand(12, 3)
    perm = balanced_assignment(score)
    assert sorted(perm.tolist()) == list(range(12))


def test_permuted_student_still_runs_and_reports(teacher, batch) -> None:
    stats = collect_input_stats(teacher, [batch])
    student, report = build_student(teacher, StudentSpec(permute=True), stats)
    assert len(report.rows) == 3 * 6
    with torch.no_grad():
        assert student(**batch).shape == (16, 2)


def test_stats_skip_padding_tokens(teacher) -> None:
    ids = torch.randint(1, 2000, (2, 10))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    stats = collect_input_stats(teacher, [{"input_ids": ids, "attention_mask": mask}])
    assert stats["encoder.layers.0.attention.query"].n == 15


def test_random_init_is_the_control(teacher, batch) -> None:
    student, report = build_student(teacher, StudentSpec(init="random"))
    assert "control" in report.notes[0]
    assert torch.equal(student.embeddings.word_embeddings.weight, teacher.embeddings.word_embeddings.weight)
    assert report.rows == []  # nothing was carried over from the teacher's encoder
    block, _ = group_weight(
        teacher.encoder.layers[0].attention.query.weight,
        teacher.encoder.layers[0].attention.query.bias,
        4,
        None,
        "block",
    )
    assert not torch.allclose(student.encoder.layers[0].attention.query.weight, block)


def test_flops_fraction_sets_ranks_of_that_cost(teacher) -> None:
    spec = StudentSpec(groups=dict(DENSE), flops_fraction=0.25, low_rank_projections=("query", "intermediate"))
    student, _ = build_student(teacher, spec)
    # query 64x64: 0.25*64*64/128 = 8; intermediate 256x64: 0.25*256*64/320 = 12.8 -> 13
    assert student.config.ranks == {"query": 8, "intermediate": 13}
    with pytest.raises(ValueError, match="at most one of"):
        StudentSpec(flops_fraction=0.25, rank_energy=0.9)


def test_named_constructions_and_their_overrides() -> None:
    lowrank = StudentSpec.from_construction("lowrank", layers=[0, 2])
    assert lowrank.groups == DENSE and lowrank.flops_fraction == 0.25 and lowrank.layers == [0, 2]
    assert "post_attention" not in lowrank.low_rank_projections
    grouped = StudentSpec.from_construction("grouped")
    assert grouped.groups == SQUEEZEBERT_GROUPS and grouped.flops_fraction is None and not grouped.ranks
    # an explicit rank replaces the construction's own: lowrank keeps the attention output dense,
    # the grouped constructions factorize all six projections
    ranked = StudentSpec.from_construction("lowrank", rank=4)
    assert ranked.flops_fraction is None and ranked.ranks == {p: 4 for p in LOW_RANK_PROJECTIONS}
    ranked = StudentSpec.from_construction("grouped-lowrank", rank_energy=0.9, init="block", permute=True)
    assert ranked.flops_fraction is None and ranked.rank_energy == 0.9
    assert ranked.low_rank_projections == PROJECTIONS and (ranked.init, ranked.permute) == ("block", True)
    assert StudentSpec.from_construction("grouped", groups=DENSE).groups == DENSE
    with pytest.raises(ValueError, match="at most one of"):
        StudentSpec.from_construction("grouped", rank=2, param_budget=10)
    with pytest.raises(ValueError, match="unknown construction"):
        StudentSpec.from_construction("quantized")
    with pytest.raises(ValueError, match="init must be"):
        StudentSpec.from_construction("lowrank", init="zeros")
