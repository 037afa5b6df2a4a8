"""Lossy student construction: carving a smaller student out of a dense teacher.

Input statistics on calibration tokens, least-squares group refits, activation-aware SVD, exact
channel permutations, and :class:`StudentSpec` with its named constructions. Every step here is
lossy and says how much it lost: the relative error of the projection's *output* on calibration
inputs when statistics are given (what matters for the network), else the relative Frobenius
error of the weight. Lossless Hugging Face interop lives in :mod:`squeezebert.convert`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from squeezebert.config import CONSTRUCTIONS, PROJECTIONS, ModelConfig
from squeezebert.convert import ConversionError
from squeezebert.model import GroupedLinear, LowRankLinear, SqueezeBert


@dataclass
class InputStats:
    """First and second moments of a projection's inputs over calibration tokens (float64)."""

    n: int
    mean: Tensor  # (in,)
    second: Tensor  # (in, in), E[x xᵀ] (uncentered)

    @property
    def cov(self) -> Tensor:
        """Centered covariance E[(x-μ)(x-μ)ᵀ]."""
        return self.second - torch.outer(self.mean, self.mean)


def collect_input_stats(model: torch.nn.Module, batches: Iterable[dict[str, Tensor]]) -> dict[str, InputStats]:
    """Moments of the inputs of every projection (``GroupedLinear``/``LowRankLinear``), keyed by
    module name, over the non-padding tokens of ``batches`` (dicts with ``input_ids``,
    ``attention_mask`` and optionally ``token_type_ids``)."""
    sums: dict[str, list[Any]] = {}
    current_mask: list[Tensor] = []
    hooks = []
    # Query, key and value see the very same input tensor: compute its moments once per call.
    last: dict[str, Any] = {"input": None, "moments": None}

    def hook_for(name: str):
        def hook(module: torch.nn.Module, args: tuple[Tensor, ...]) -> None:
            x = args[0]
            if last["input"] is x:
                n, s, m = last["moments"]
            else:
                flat = x[current_mask[0]] if x.dim() == 3 else x  # (tokens, in), padding dropped
                flat = flat.detach().float()
                # fp32 GEMM per batch (fast), fp64 running sums (no drift over many batches)
                n, s, m = flat.shape[0], flat.sum(0).double(), (flat.T @ flat).double()
                last["input"], last["moments"] = x, (n, s, m)
            acc = sums.setdefault(name, [0, 0.0, 0.0])
            acc[0] += n
            acc[1] = acc[1] + s
            acc[2] = acc[2] + m

        return hook

    seen: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, LowRankLinear):
            seen.update(id(m) for m in module.modules())
            hooks.append(module.register_forward_pre_hook(hook_for(name)))
        elif isinstance(module, GroupedLinear) and id(module) not in seen:
            hooks.append(module.register_forward_pre_hook(hook_for(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                mask = batch.get("attention_mask")
                ids = batch["input_ids"]
                current_mask[:] = [mask.bool() if mask is not None else torch.ones_like(ids, dtype=torch.bool)]
                model(ids, mask, batch.get("token_type_ids"))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {k: InputStats(n, s / n, m / n) for k, (n, s, m) in sums.items() if n > 0}


def _damped(matrix: Tensor, damping: float) -> Tensor:
    """``matrix + damping · mean(diag) · I``: keeps inverses and Cholesky well conditioned when
    some input directions are (nearly) unused on the calibration data."""
    scale = matrix.diagonal().mean().clamp_min(1e-12)
    return matrix + damping * scale * torch.eye(matrix.shape[0], dtype=matrix.dtype)


def _output_error(w_ref: Tensor, b_ref: Tensor, w_new: Tensor, b_new: Tensor, stats: InputStats | None) -> float:
    """Relative error ‖(W'x + b') − (Wx + b)‖ / ‖Wx + b‖ in expectation over the calibration
    inputs, or the relative Frobenius error of the weight without statistics."""
    a = w_new.double() - w_ref.double()  # (out, in)
    if stats is None:
        return (a.norm() / w_ref.double().norm().clamp_min(1e-30)).item()
    c = b_new.double() - b_ref.double()
    err = (a @ stats.second * a).sum() + 2 * c @ (a @ stats.mean) + c @ c
    w = w_ref.double()
    b = b_ref.double()
    ref = (w @ stats.second * w).sum() + 2 * b @ (w @ stats.mean) + b @ b
    return (err.clamp_min(0) / ref.clamp_min(1e-30)).sqrt().item()


def group_weight(
    weight: Tensor,
    bias: Tensor,
    groups: int,
    stats: InputStats | None = None,
    method: str = "lsq",
    damping: float = 1e-2,
) -> tuple[Tensor, Tensor]:
    """A dense ``(out, in)`` projection -> a grouped one: weight ``(out, in/G)`` and bias.

    ``block`` keeps the diagonal blocks (the rest of the weight is lost). ``lsq`` (needs
    ``stats``) refits each group's block to reproduce the dense layer's outputs on calibration
    inputs: group g sees only its input slice x_g, and the best linear predictor of the dense
    output rows from x_g is ``W[rows_g] Σ[:, cols_g] Σ[cols_g, cols_g]⁻¹`` (Σ the centered input
    covariance); the bias absorbs the mean. This is the measured best initialization in
    docs/notes/squeeze-findings.md (73% vs 52% SST-2 accuracy right after construction).
    """
    out_f, in_f = weight.shape
    if out_f % groups or in_f % groups:
        raise ValueError(f"groups={groups} must divide the projection's {out_f}x{in_f} shape")
    og, ig = out_f // groups, in_f // groups
    w = weight.detach().double()
    blocks = torch.stack([w[g * og : (g + 1) * og, g * ig : (g + 1) * ig] for g in range(groups)])  # (G, og, ig)
    new_bias = bias.detach().double().clone()
    if method == "lsq" and groups > 1:
        if stats is None:
            raise ValueError("method='lsq' needs calibration statistics")
        cov = stats.cov
        for g in range(groups):  # G small solves (G <= 8 in practice), not a hot path
            cols = slice(g * ig, (g + 1) * ig)
            rows = slice(g * og, (g + 1) * og)
            rhs = cov[cols, :] @ w[rows].T  # (ig, og) = Σ[cols, :] W[rows]ᵀ
            blocks[g] = torch.linalg.solve(_damped(cov[cols, cols], damping), rhs).T
        # b' = b + W μ − W'_blockdiag μ keeps the mean output unchanged.
        mu = stats.mean
        dense_mu = w @ mu
        grouped_mu = torch.bmm(blocks, mu.view(groups, ig, 1)).reshape(out_f)
        new_bias = new_bias + dense_mu - grouped_mu
    elif method not in ("lsq", "block"):
        raise ValueError(f"unknown grouping method {method!r}; use 'lsq' or 'block'")
    return blocks.reshape(out_f, ig).to(weight.dtype), new_bias.to(bias.dtype)


def low_rank_factors(
    block: Tensor, rank: int, cov: Tensor | None = None, damping: float = 1e-2
) -> tuple[Tensor, Tensor]:
    """Rank-``rank`` factors ``up (out, r)``, ``down (r, in)`` of a ``(out, in)`` matrix.

    With ``cov`` (the input covariance) this is activation-aware SVD: it minimizes the *output*
    error E‖(W − up·down) x‖² rather than the weight error, by whitening — with Σ = L Lᵀ,
    ‖(W − W')L‖_F is that output error, so truncate the SVD of W L and un-whiten with L⁻¹.
    Measured in docs/notes/squeeze-findings.md: 82% vs 71% SST-2 accuracy right after
    construction for plain SVD at equal FLOPs.
    """
    w = block.detach().double()
    if cov is None:
        u, s, vt = torch.linalg.svd(w, full_matrices=False)
        root = s[:rank].sqrt()
        return (u[:, :rank] * root).to(block.dtype), (root[:, None] * vt[:rank]).to(block.dtype)
    chol = torch.linalg.cholesky(_damped(cov, damping))  # (in, in), lower
    u, s, vt = torch.linalg.svd(w @ chol, full_matrices=False)
    root = s[:rank].sqrt()
    up = u[:, :rank] * root  # (out, r)
    # down = S^½ Vᵀ L⁻¹: solve down · L = S^½ Vᵀ (triangular, no explicit inverse).
    down = torch.linalg.solve_triangular(chol, root[:, None] * vt[:rank], upper=False, left=False)
    return up.to(block.dtype), down.to(block.dtype)


def rank_for_energy(block: Tensor, energy: float, cov: Tensor | None = None, damping: float = 1e-2) -> int:
    """Smallest rank keeping ``energy`` (0..1] of the squared singular values (of W L when
    ``cov`` is given, i.e. of the output energy)."""
    if not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    w = block.detach().double()
    if cov is not None:
        w = w @ torch.linalg.cholesky(_damped(cov, damping))
    s2 = torch.linalg.svdvals(w).square()
    kept = torch.cumsum(s2, 0) / s2.sum()
    return int(torch.searchsorted(kept, torch.tensor(energy, dtype=kept.dtype) - 1e-12).item()) + 1


SQUEEZEBERT_GROUPS = {"query": 4, "key": 4, "value": 4, "post_attention": 1, "intermediate": 4, "output": 4}
DENSE_GROUPS = {p: 1 for p in SQUEEZEBERT_GROUPS}
LOW_RANK_PROJECTIONS = ("query", "key", "value", "intermediate", "output")


@dataclass
class StudentSpec:
    """What student to carve out of a teacher.

    ``groups``: group count per projection name (default SqueezeBERT's 4/4/4/1/4/4).
    ``layers``: teacher layer indices to keep, in order (default all).
    Rank, at most one of: ``ranks`` (per-group rank, keys as ``ModelConfig.ranks``: ``"query"`` or
    ``"3.query"``), ``rank_energy`` (keep this fraction of each projection's output energy) or
    ``param_budget`` (largest uniform rank fraction whose student has at most this many
    parameters) or ``flops_fraction`` (each chosen projection's rank set so it costs this fraction
    of the dense projection's FLOPs: 0.25 matches SqueezeBERT's 4 groups).
    ``embedding_size``: factorize the word embeddings to this width by SVD.
    ``init``: ``lsq`` (least-squares refit of groups on calibration data, activation-aware SVD),
    ``block`` (diagonal blocks, plain SVD) or ``random`` (teacher embeddings, random encoder: the
    control). ``low_rank_projections``: which projections get a rank with ``rank_energy``,
    ``param_budget`` or ``flops_fraction`` (default all six). ``permute``: first reorder FFN neurons and heads of a
    dense teacher (exactly) so each group's diagonal block holds the most weight energy.
    Structured pruning (:mod:`squeezebert.prune`, applied to the dense teacher before grouping and
    rank): ``num_layers`` (keep this many layers, chosen by measured output change; not with
    ``layers``), ``heads`` and ``ffn`` (attention heads and FFN neurons kept per layer, ranked by
    ``importance``: ``taylor`` or ``magnitude``), ``blocks`` (then keep only this many of the
    attention and FFN blocks, chosen by measured output change; a removed block becomes a constant).
    """

    groups: dict[str, int] = field(default_factory=lambda: dict(SQUEEZEBERT_GROUPS))
    layers: list[int] | None = None
    ranks: dict[str, int] = field(default_factory=dict)
    rank_energy: float | None = None
    param_budget: int | None = None
    flops_fraction: float | None = None
    embedding_size: int | None = None
    init: str = "lsq"
    low_rank_projections: tuple[str, ...] = PROJECTIONS
    permute: bool = False
    num_layers: int | None = None
    heads: int | None = None
    ffn: int | None = None
    importance: str = "magnitude"
    blocks: int | None = None

    @property
    def prunes(self) -> bool:
        """Whether this spec removes layers by importance, heads, FFN neurons or whole blocks."""
        return any(x is not None for x in (self.num_layers, self.heads, self.ffn, self.blocks))

    @property
    def only_prunes(self) -> bool:
        """Whether every weight of the student is one of the teacher's own, kept or dropped: dense
        groups, no rank and no embedding factorization (a ``pruned`` construction, layers given
        by list or chosen, or the teacher's own shape)."""
        return (
            all(g == 1 for g in self.groups.values())
            and not self.ranks
            and all(x is None for x in (self.rank_energy, self.param_budget, self.flops_fraction, self.embedding_size))
            and self.init != "random"
        )

    def __post_init__(self) -> None:
        unknown = set(self.groups) - set(PROJECTIONS)
        if unknown:
            raise ValueError(f"groups: unknown projection(s) {sorted(unknown)}; use {PROJECTIONS}")
        chosen = [x for x in (self.ranks, self.rank_energy, self.param_budget, self.flops_fraction) if x]
        if len(chosen) > 1:
            raise ValueError("give at most one of ranks, rank_energy, param_budget and flops_fraction")
        if self.flops_fraction is not None and not 0 < self.flops_fraction < 1:
            raise ValueError(f"flops_fraction must be in (0, 1), got {self.flops_fraction}")
        if self.init not in ("lsq", "block", "random"):
            raise ValueError(f"init must be 'lsq', 'block' or 'random', got {self.init!r}")
        if self.num_layers is not None and self.layers is not None:
            raise ValueError("give num_layers (layers chosen by importance) or layers (a fixed list), not both")
        for name in ("num_layers", "heads", "ffn", "blocks"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.importance not in ("taylor", "magnitude"):
            raise ValueError(f"importance must be 'taylor' or 'magnitude', got {self.importance!r}")
        if self.prunes and self.init == "random":
            raise ValueError("pruning keeps the teacher's weights; it cannot be combined with init='random'")

    @classmethod
    def from_construction(
        cls,
        name: str = "lowrank",
        layers: list[int] | None = None,
        *,
        groups: dict[str, int] | None = None,
        rank: int | None = None,
        rank_energy: float | None = None,
        param_budget: int | None = None,
        flops_fraction: float | None = None,
        embedding_size: int | None = None,
        init: str | None = None,
        permute: bool | None = None,
        num_layers: int | None = None,
        heads: int | None = None,
        ffn: int | None = None,
        importance: str | None = None,
        blocks: int | None = None,
    ) -> StudentSpec:
        """A named construction, with any of its choices overridden (None keeps the construction's).

        The constructions have equal encoder FLOPs (a quarter of the dense projections'):

        * ``lowrank`` (default): dense groups, activation-aware SVD of Q, K, V, FFN in and out;
        * ``grouped``: SqueezeBERT's 4/4/4/1/4/4 groups, least-squares refit of each group;
        * ``grouped-lowrank``: the grouped student with each group's FFN blocks at half their FLOPs.

        ``pruned``: a dense student made only by structured pruning (``num_layers``, ``heads``,
        ``ffn``; every remaining GEMM dense and wide). Pruning choices combine with the others
        too (pruning first, then grouping and rank).

        ``groups`` replaces the construction's groups. An explicit rank choice (``rank``: one
        rank per group for every factorized projection, or ``rank_energy``, ``param_budget``,
        ``flops_fraction``) replaces the construction's own; it factorizes Q, K, V and the FFN
        for ``lowrank`` (the attention output stays dense) and all six projections otherwise.
        The result is validated like any spec.
        """
        kwargs: dict[str, Any]
        if name == "lowrank":
            kwargs = {
                "groups": dict(DENSE_GROUPS),
                "flops_fraction": 0.25,
                "low_rank_projections": LOW_RANK_PROJECTIONS,
            }
        elif name == "grouped":
            kwargs = {"groups": dict(SQUEEZEBERT_GROUPS)}
        elif name == "pruned":
            kwargs = {"groups": dict(DENSE_GROUPS)}
        elif name == "grouped-lowrank":
            kwargs = {
                "groups": dict(SQUEEZEBERT_GROUPS),
                "flops_fraction": 0.5,
                "low_rank_projections": ("intermediate", "output"),
            }
        else:
            raise ValueError(
                f"unknown construction {name!r}; use {', '.join(CONSTRUCTIONS[:-1])} or {CONSTRUCTIONS[-1]}"
            )
        if groups is not None:
            kwargs["groups"] = dict(groups)
        if any(x is not None for x in (rank, rank_energy, param_budget, flops_fraction)):
            projections = LOW_RANK_PROJECTIONS if name == "lowrank" else PROJECTIONS
            kwargs.update(
                ranks={} if rank is None else {p: rank for p in projections},
                rank_energy=rank_energy,
                param_budget=param_budget,
                flops_fraction=flops_fraction,
                low_rank_projections=projections,
            )
        overrides = {
            "embedding_size": embedding_size,
            "init": init,
            "permute": permute,
            "num_layers": num_layers,
            "heads": heads,
            "ffn": ffn,
            "importance": importance,
            "blocks": blocks,
        }
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(layers=layers, **kwargs)


@dataclass
class SurgeryRow:
    """One lossy step on one projection: relative output error (or weight error, see ``basis``)."""

    layer: int  # student layer
    teacher_layer: int
    projection: str
    groups: int
    rank: int | None
    group_error: float
    total_error: float
    basis: str  # "output" (calibration statistics) or "weight"


@dataclass
class SurgeryReport:
    rows: list[SurgeryRow]
    embedding_error: float | None
    teacher_layers: list[int]
    notes: list[str]

    def table(self) -> str:
        """Markdown table of what each lossy step lost."""
        lines = [
            "| layer (teacher) | projection | groups | rank | error after grouping | error after rank |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r.layer} ({r.teacher_layer}) | {r.projection} | {r.groups} | {r.rank or 'full'} | "
                f"{r.group_error:.3f} | {r.total_error:.3f} |"
            )
        extra = (
            [f"word embeddings factorized: relative error {self.embedding_error:.3f}"] if self.embedding_error else []
        )
        basis = {r.basis for r in self.rows}
        extra.append(
            "errors are relative output errors on calibration tokens"
            if basis == {"output"}
            else "errors are relative weight (Frobenius) errors: no calibration data"
        )
        return "\n".join(lines + [""] + [f"- {x}" for x in extra + self.notes])


_PROJ_PATHS = {
    "query": "attention.query",
    "key": "attention.key",
    "value": "attention.value",
    "post_attention": "post_attention.conv1d",
    "intermediate": "intermediate.conv1d",
    "output": "output.conv1d",
}


def projection_module(model: torch.nn.Module, layer: int, proj: str) -> torch.nn.Module:
    """The module of ``proj`` in ``layer`` (``encoder.layers.{layer}.attention.query`` ...)."""
    return model.get_submodule(f"encoder.layers.{layer}.{_PROJ_PATHS[proj]}")


def projection_name(layer: int, proj: str) -> str:
    return f"encoder.layers.{layer}.{_PROJ_PATHS[proj]}"


def _student_ranks(
    teacher: torch.nn.Module,
    spec: StudentSpec,
    layers: list[int],
    cfg: ModelConfig,
    stats: dict[str, InputStats] | None,
) -> dict[str, int]:
    """Resolve ``rank_energy`` / ``param_budget`` into explicit per-layer ranks."""
    if spec.ranks:
        return dict(spec.ranks)
    # A pruned model's layers differ in width: its ranks are per layer ("3.query").
    per_layer = list(range(cfg.num_hidden_layers)) if cfg.is_pruned else [None]

    def key(layer: int | None, proj: str) -> str:
        return proj if layer is None else f"{layer}.{proj}"

    if spec.flops_fraction:
        out = {}
        for layer in per_layer:
            for proj in spec.low_rank_projections:
                cin, cout = cfg.projection_shape(proj, layer)
                if not cin or not cout:
                    continue  # a removed block
                g = cfg.groups(proj)
                og, ig = cout // g, cin // g
                # r·(og + ig) multiply-adds per group against og·ig for the dense group
                out[key(layer, proj)] = max(1, round(spec.flops_fraction * og * ig / (og + ig)))
        return out
    if not spec.rank_energy and not spec.param_budget:
        return {}
    ranks: dict[str, int] = {}
    if spec.rank_energy:
        for j, i in enumerate(layers):
            for proj in spec.low_rank_projections:
                if not all(cfg.projection_shape(proj, j)):
                    continue  # a removed block
                g = cfg.groups(proj)
                w = projection_module(teacher, i, proj).dense_weight()
                st = stats.get(projection_name(i, proj)) if stats else None
                out_f, in_f = w.shape
                og, ig = out_f // g, in_f // g
                # the largest rank any group needs, so every group keeps at least `energy`
                r = max(
                    rank_for_energy(
                        w[k * og : (k + 1) * og, k * ig : (k + 1) * ig],
                        spec.rank_energy,
                        st.cov[k * ig : (k + 1) * ig, k * ig : (k + 1) * ig] if st else None,
                    )
                    for k in range(g)
                )
                full = min(og, ig)
                if r < full and r * (og + ig) < og * ig:  # only factorize where it saves compute
                    ranks[f"{j}.{proj}"] = r
        return ranks
    # param_budget: one rank fraction for all chosen projections, the largest that fits.

    def params_at(fraction: float) -> tuple[int, dict[str, int]]:
        rk = {}
        for layer in per_layer:
            for proj in spec.low_rank_projections:
                cin, cout = cfg.projection_shape(proj, layer)
                if not cin or not cout:
                    continue  # a removed block
                g = cfg.groups(proj)
                full = min(cin, cout) // g
                r = max(1, min(full, round(fraction * full)))
                if r * (cin + cout) < cin * cout // g:  # factorize only where it saves parameters
                    rk[key(layer, proj)] = r
        trial = cfg.replace(ranks=rk)
        n = sum(p.numel() for p in SqueezeBert(trial).parameters())
        return n, rk

    lo, hi = 0.0, 1.0
    n_min, best = params_at(0.0)
    if n_min > spec.param_budget:
        raise ValueError(
            f"param_budget={spec.param_budget:,} is below the smallest student of this shape ({n_min:,} "
            "parameters at rank 1); drop layers or factorize the embeddings (embedding_size)"
        )
    for _ in range(20):
        mid = (lo + hi) / 2
        n, rk = params_at(mid)
        if n <= spec.param_budget:
            lo, best = mid, rk
        else:
            hi = mid
    return best


def build_student(
    teacher: torch.nn.Module, spec: StudentSpec, stats: dict[str, InputStats] | None = None
) -> tuple[torch.nn.Module, SurgeryReport]:
    """Carve a student out of ``teacher`` (a ``SqueezeBert``) as ``spec`` says.

    ``stats`` (from :func:`collect_input_stats` on the teacher with real task inputs) enables the
    least-squares group refit and activation-aware SVD; without it grouping keeps the diagonal
    blocks and SVD is plain. Embeddings, LayerNorms, pooler and classifier are copied unchanged.
    """
    tcfg: ModelConfig = teacher.config
    if spec.permute:
        teacher = copy.deepcopy(teacher)
        stats = dict(stats) if stats else None
        permute_for_groups(teacher, spec.groups, stats)
    layers = list(range(tcfg.num_hidden_layers)) if spec.layers is None else list(spec.layers)
    if not layers or any(not 0 <= i < tcfg.num_hidden_layers for i in layers):
        raise ValueError(f"layers must be indices in 0..{tcfg.num_hidden_layers - 1}, got {layers}")
    notes = []
    if spec.init == "lsq" and stats is None:
        notes.append("no calibration data: grouping keeps diagonal blocks and SVD is plain")
    use_stats = stats if spec.init == "lsq" else None
    groups = {ModelConfig.group_field(p): spec.groups.get(p, tcfg.groups(p)) for p in PROJECTIONS}
    emb = spec.embedding_size or tcfg.embedding_size
    base_cfg = tcfg.keep_layers(layers).replace(ranks={}, embedding_size=emb, **groups)
    ranks = _student_ranks(teacher, spec, layers, base_cfg, use_stats)
    scfg = base_cfg.replace(ranks=ranks)
    student = SqueezeBert(scfg)
    if spec.init == "random":
        notes.append("random encoder initialization (control); embeddings copied from the teacher")

    t_sd = teacher.state_dict()
    s_sd = student.state_dict()
    new_sd: dict[str, Tensor] = {}
    for key in s_sd:
        if key.startswith("encoder."):
            continue
        if key in t_sd and t_sd[key].shape == s_sd[key].shape:
            new_sd[key] = t_sd[key]
    emb_err = None
    if emb != tcfg.embedding_size:
        word = teacher.embeddings.word_embeddings.weight.detach().double()  # (V, E_t)
        if teacher.embeddings.projection is not None:
            word = word @ teacher.embeddings.projection.weight.detach().double().T  # (V, H)
        u, s, vt = torch.linalg.svd(word, full_matrices=False)
        new_sd["embeddings.word_embeddings.weight"] = (u[:, :emb] * s[:emb]).float()  # (V, E)
        new_sd["embeddings.projection.weight"] = vt[:emb].T.float()  # (H, E)
        emb_err = (s[emb:].square().sum() / s.square().sum()).sqrt().item()

    rows: list[SurgeryRow] = []
    for j, i in enumerate(layers):
        prefix_t, prefix_s = f"encoder.layers.{i}.", f"encoder.layers.{j}."
        for key, value in t_sd.items():  # LayerNorms and anything that is not a projection
            if key.startswith(prefix_t) and "layernorm" in key:
                new_sd[prefix_s + key[len(prefix_t) :]] = value
        if spec.init == "random":
            continue
        for proj in PROJECTIONS:
            t_mod = projection_module(teacher, i, proj) if all(scfg.projection_shape(proj, j)) else None
            if t_mod is None:  # a removed block: the constant (if this is its output) is all there is
                if proj in ("post_attention", "output"):
                    new_sd[f"{projection_name(j, proj)}.bias"] = t_sd[f"{projection_name(i, proj)}.bias"]
                continue
            w, b = t_mod.dense_weight().detach(), t_mod.bias.detach()
            st = use_stats.get(projection_name(i, proj)) if use_stats else None
            g, r = scfg.groups(proj), scfg.rank(j, proj)
            same_groups = (
                isinstance(t_mod, type(projection_module(student, j, proj)))
                and getattr(t_mod, "groups", None) == g
                and r is None
                and getattr(t_mod, "rank", None) is None
            )
            if same_groups:
                wg, bg = t_mod.weight.detach(), b
            else:
                wg, bg = group_weight(w, b, g, st, "lsq" if st is not None else "block")
            out_f, in_f = w.shape
            og, ig = out_f // g, in_f // g
            grouped_dense = torch.block_diag(*wg.view(g, og, ig).unbind(0))
            group_err = _output_error(w, b, grouped_dense, bg, st)
            name = projection_name(j, proj)
            if r is None:
                new_sd[f"{name}.weight"], new_sd[f"{name}.bias"] = wg, bg
                total_err = group_err
            else:
                ups, downs = [], []
                blocks = wg.view(g, og, ig)
                for k in range(g):
                    cov = st.cov[k * ig : (k + 1) * ig, k * ig : (k + 1) * ig] if st is not None else None
                    up, down = low_rank_factors(blocks[k], r, cov)
                    ups.append(up)
                    downs.append(down)
                up_w, down_w = torch.cat(ups), torch.cat(downs)  # (out, r), (G*r, in/G)
                approx = torch.block_diag(*[u @ d for u, d in zip(ups, downs)])
                if st is not None:  # the mean part of the error goes into the bias
                    bg = bg + ((grouped_dense - approx).double() @ st.mean).to(bg.dtype)
                new_sd[f"{name}.down.weight"] = down_w
                new_sd[f"{name}.up.weight"] = up_w
                new_sd[f"{name}.up.bias"] = bg
                total_err = _output_error(w, b, approx, bg, st)
            rows.append(SurgeryRow(j, i, proj, g, r, group_err, total_err, "output" if st is not None else "weight"))
    missing = [k for k in s_sd if k not in new_sd and not (spec.init == "random" and k.startswith("encoder."))]
    if missing:
        raise ConversionError(f"student surgery left weights unset: {missing[:5]}")
    student.load_state_dict(new_sd, strict=False)
    return student.eval(), SurgeryReport(rows, emb_err, layers, notes)


# --------------------------------------------------------------------------- exact permutations
def permute_ffn_neurons(model: torch.nn.Module, layer: int, perm: Tensor) -> None:
    """Reorder the FFN's intermediate neurons of ``layer`` in place: rows of the intermediate
    projection, columns of the output projection. An exact rewrite of a dense FFN."""
    inter, out = projection_module(model, layer, "intermediate"), projection_module(model, layer, "output")
    if getattr(inter, "groups", 0) != 1 or getattr(out, "groups", 0) != 1:
        raise ValueError("FFN neurons can only be permuted in a dense (groups=1, full-rank) FFN")
    with torch.no_grad():
        inter.weight.copy_(inter.weight[perm])
        inter.bias.copy_(inter.bias[perm])
        out.weight.copy_(out.weight[:, perm])


def permute_heads(model: torch.nn.Module, layer: int, head_perm: Tensor) -> None:
    """Reorder the attention heads of ``layer`` in place: head blocks of the query, key and value
    rows and of the attention-output columns. An exact rewrite of dense attention."""
    cfg: ModelConfig = model.config
    hd = cfg.hidden_size // cfg.num_attention_heads
    perm = (head_perm[:, None] * hd + torch.arange(hd)).reshape(-1)  # channel permutation
    mods = [projection_module(model, layer, p) for p in ("query", "key", "value", "post_attention")]
    if any(getattr(m, "groups", 0) != 1 for m in mods):
        raise ValueError("heads can only be permuted in dense (groups=1, full-rank) attention")
    with torch.no_grad():
        for m in mods[:3]:
            m.weight.copy_(m.weight[perm])
            m.bias.copy_(m.bias[perm])
        mods[3].weight.copy_(mods[3].weight[:, perm])


def balanced_assignment(score: Tensor) -> Tensor:
    """Assign n units to G equal-size groups, greedily by descending ``score[unit, group]``;
    returns the permutation that lists group 0's units first, then group 1's, ..."""
    n, g = score.shape
    if n % g:
        raise ValueError(f"{n} units do not split into {g} equal groups")
    cap = n // g
    order = torch.argsort(score.reshape(-1), descending=True)
    group_of = torch.full((n,), -1, dtype=torch.long)
    fill = [0] * g
    for flat in order.tolist():  # setup-time only, n*g <= ~40k
        unit, grp = divmod(flat, g)
        if group_of[unit] < 0 and fill[grp] < cap:
            group_of[unit] = grp
            fill[grp] += 1
    return torch.argsort(group_of * n + torch.arange(n))


def permute_for_groups(model: torch.nn.Module, groups: dict[str, int], stats: dict[str, InputStats] | None) -> None:
    """Exact channel permutations of a dense model that put the weight energy each group can
    keep on its diagonal block (FFN neurons by their affinity to input/output channel groups,
    heads likewise for Q/K/V). Statistics of permuted inputs are permuted to match.

    Measured in docs/notes/squeeze-findings.md: permuting before cutting changed nothing
    beyond noise on MiniLM; kept as an option, off by default.
    """
    cfg: ModelConfig = model.config
    for layer in range(cfg.num_hidden_layers):
        gi, go = groups.get("intermediate", 1), groups.get("output", 1)
        if gi == go and gi > 1:
            w1 = projection_module(model, layer, "intermediate").weight.detach()  # (I, H)
            w2 = projection_module(model, layer, "output").weight.detach()  # (H, I)
            h = w1.shape[1]
            score = (
                w1.view(w1.shape[0], gi, h // gi).square().sum(-1) + w2.view(gi, h // gi, -1).square().sum(1).T
            )  # (I, G)
            perm = balanced_assignment(score)
            permute_ffn_neurons(model, layer, perm)
            key = projection_name(layer, "output")
            if stats and key in stats:
                st = stats[key]
                stats[key] = InputStats(st.n, st.mean[perm], st.second[perm][:, perm])
        gq = groups.get("query", 1)
        heads = cfg.num_attention_heads
        if gq > 1 and heads % gq == 0 and gq == groups.get("key", 1) == groups.get("value", 1):
            hd = cfg.hidden_size // heads
            score = torch.zeros(heads, gq)
            for p in ("query", "key", "value"):
                w = projection_module(model, layer, p).weight.detach()  # (H, H)
                score += w.view(heads, hd, gq, -1).square().sum((1, 3))
            head_perm = balanced_assignment(score)
            permute_heads(model, layer, head_perm)
            key = projection_name(layer, "post_attention")
            if stats and key in stats:
                perm = (head_perm[:, None] * hd + torch.arange(hd)).reshape(-1)
                st = stats[key]
                stats[key] = InputStats(st.n, st.mean[perm], st.second[perm][:, perm])
