"""Knowledge distillation: loss terms and the loss function the one training loop runs.

Loss = (1 − α)·task loss + α·logit distillation + β·hidden-state MSE + γ·attention KL.

* Logit distillation: KL(softmax(t/T) ‖ softmax(s/T))·T² (Hinton et al.; the T² keeps gradient
  scale independent of T), MSE on the teacher's output for regression.
* Hidden states (TinyBERT): MSE between mapped layers over real tokens, through a learned linear
  projection when widths differ.
* Attention (TinyBERT/MiniLM): KL between attention distributions of mapped layers, per real
  query token; heads are averaged first when the head counts differ.

Teacher logits are computed once per training example (the squeeze workflow runs
:func:`squeezebert.train.predict`) and travel with the batch as ``teacher_logits``; intermediate
targets need the teacher's activations, which are too large to cache for real datasets (67k SST-2
sentences × 7 layers × 64 tokens × 384 floats ≈ 46 GB), so when β or γ is non-zero the teacher
runs alongside the student. With a pruned student that forward is the largest part of a step (short
texts, a 4-layer, 3-head student of minilm-l6 on the AMX Xeon: 132 of 305 ms per batch of 32,
scripts/distill_step_cost.py, docs/RESULTS.md session 20), so it runs in bf16 where the CPU has
native bf16 and bf16 measures faster on the training batches (``teacher_precision``,
:func:`choose_teacher_precision`; 54 ms there); its targets move by under 1%.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from squeezebert.augment import AUGMENT_WORDS
from squeezebert.distributed import world
from squeezebert.model import SqueezeBert

# ``hidden_weight="auto"``: the hidden-state MSE weight used when augmentation is on.
AUTO_HIDDEN_WEIGHT = 1.0
#: ... except for a pruned student (``resolve(copies, pruned=True)``). Measured at the shapes
#: ``--speedup 3`` chose, everything else the default, against the same runs with hidden states
#: matched (docs/RESULTS.md, session 32; deployed student, points): CoLA +2.60 and +0.40 MCC
#: (seeds 42, 43), RTE +1.45 and +0.36 (seed 43: kept fp32 student), MRPC +0.28 and -0.05 F1,
#: STS-B +0.11, the 10k-text ``short`` task +0.58 (seed 42): +0.72 over eight runs, one lower by
#: 0.05; and the teacher no longer runs while distilling, so both steps took about 1.8-2.6x less
#: time (indicative).
PRUNED_HIDDEN_WEIGHT = 0.0

#: The precision of the teacher's forward during training (it runs there only for hidden-state
#: or attention targets): ``auto`` = measured by :func:`choose_teacher_precision`.
TEACHER_PRECISIONS = ("auto", "fp32", "bf16")
#: ``auto`` takes bf16 only when it is at least this much faster than fp32 (the spread of repeated
#: timings on two shared cores is ~10%) ...
BF16_MIN_SPEEDUP = 1.1
#: ... and its hidden states are this close to fp32's (relative error over the real tokens, worst
#: layer; measured 0.25-0.64% on minilm-l6).
BF16_MAX_ERROR = 0.02


@dataclass
class DistillConfig:
    """Weights and mapping of the distillation loss.

    ``layer_map``: (student hidden-state index, teacher hidden-state index) pairs, where index 0
    is the embedding output and i the output of layer i. Default: uniform mapping, student layer
    j+1 ↔ teacher layer round((j+1)·L_t/L_s), plus the embeddings.

    ``augment``: perturbed copies of every training example added to the distillation data and
    labelled by the teacher (see :mod:`squeezebert.augment`); 0 = the training set alone;
    ``"auto"`` (the default) = enough copies (at most 3) to bring a small training set to about
    32k examples, none for a large one (measured on four small GLUE tasks: docs/RESULTS.md).
    ``augment_words``: where a copy's replacement words come from (:data:`AUGMENT_WORDS`):
    ``"random"`` (the default), or ``"neighbours"``, which measured no better (docs/RESULTS.md,
    session 15: SST-2 with 2,000 labels, 3 seeds/settings, and CoLA).

    ``hidden_weight``: a number, or ``"auto"`` (the default) = :data:`AUTO_HIDDEN_WEIGHT` when
    augmentation adds copies to a surgery (low-rank, grouped) student and 0 otherwise
    (:meth:`resolve`): on the augmented small tasks hidden-state matching was worth +1.7 CoLA MCC
    to low-rank students and about nothing elsewhere, for 1.2-1.4x the training time (it runs the
    teacher every step); on large training sets it was not measured to pay for that time. A
    pruned student, whose every kept weight is the teacher's own, distils logits only: matching
    hidden states cost it on average (docs/RESULTS.md, session 32; :data:`PRUNED_HIDDEN_WEIGHT`).

    ``teacher_precision`` (:data:`TEACHER_PRECISIONS`): the teacher's forward for those targets in
    fp32, or in bf16 autocast; ``"auto"`` (the default) is resolved by measurement in squeeze
    (:func:`choose_teacher_precision`); a :class:`DistillationLoss` given it unresolved runs fp32.

    ``head_map``: per student layer, the teacher heads its heads were pruned from (in order), so
    that attention distillation matches each student head to its own teacher head; squeeze sets
    it for pruned students. Without it, layers whose head counts differ compare head-averaged
    distributions.
    """

    alpha: float = 0.7
    temperature: float = 2.0
    hidden_weight: float | str = "auto"
    attention_weight: float = 0.0
    layer_map: list[tuple[int, int]] | None = None
    augment: int | str = "auto"
    augment_words: str = "random"
    teacher_precision: str = "auto"
    head_map: list[list[int]] | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        w = self.hidden_weight
        if w != "auto" and (not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0):
            raise ValueError(f"hidden_weight must be 'auto' or a number >= 0, got {w!r}")
        if self.attention_weight < 0:
            raise ValueError(f"attention_weight must be >= 0, got {self.attention_weight}")
        if self.augment != "auto" and not (isinstance(self.augment, int) and self.augment >= 0):
            raise ValueError(f"augment must be 'auto' or >= 0 copies per example, got {self.augment!r}")
        if self.augment_words not in AUGMENT_WORDS:
            raise ValueError(f"augment_words must be one of {AUGMENT_WORDS}, got {self.augment_words!r}")
        if self.teacher_precision not in TEACHER_PRECISIONS:
            raise ValueError(f"teacher_precision must be one of {TEACHER_PRECISIONS}, got {self.teacher_precision!r}")

    def resolve(self, copies: int, pruned: bool = False) -> DistillConfig:
        """This config with ``hidden_weight="auto"`` made a number, given the augmentation's copies
        and whether the student was pruned out of the teacher."""
        if self.hidden_weight != "auto":
            return self
        if pruned:
            return replace(self, hidden_weight=PRUNED_HIDDEN_WEIGHT)
        return replace(self, hidden_weight=AUTO_HIDDEN_WEIGHT if copies > 0 else 0.0)

    @property
    def needs_teacher_activations(self) -> bool:
        if self.hidden_weight == "auto":
            raise ValueError("DistillConfig.hidden_weight is 'auto': resolve() it with the augmentation first")
        return self.hidden_weight > 0 or self.attention_weight > 0


def default_layer_map(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """Embeddings to embeddings, then each student layer to the evenly spaced teacher layer."""
    return [(0, 0)] + [(j, round(j * teacher_layers / student_layers)) for j in range(1, student_layers + 1)]


# --------------------------------------------------------------------------- loss terms
def logit_kd_loss(student: Tensor, teacher: Tensor, temperature: float, regression: bool = False) -> Tensor:
    """Soft-target loss: KL(p_t ‖ p_s) at temperature T, times T²; MSE for regression."""
    if regression:
        return F.mse_loss(student.float().squeeze(-1), teacher.float().squeeze(-1))
    t = temperature
    log_p_s = F.log_softmax(student.float() / t, dim=-1)
    log_p_t = F.log_softmax(teacher.float() / t, dim=-1)
    return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean") * t * t


def hidden_mse(student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the real (mask = 1) tokens: (B, T, H) each, mask (B, T)."""
    real = mask.bool()
    return F.mse_loss(student[real].float(), teacher[real].float())


def attention_kl(student: Tensor, teacher: Tensor, mask: Tensor, heads: list[int] | None = None) -> Tensor:
    """KL(teacher ‖ student) of attention distributions (B, heads, T, T), averaged over heads
    and real query tokens. ``heads``: the teacher heads the student's correspond to, in order
    (a pruned student's); else different head counts compare head-averaged distributions."""
    student, teacher = student.float(), teacher.float()  # a teacher run in bf16 gives bf16 ones
    if heads is not None:
        if len(heads) != student.shape[1] or max(heads, default=-1) >= teacher.shape[1]:
            raise ValueError(
                f"head map {heads} does not fit {student.shape[1]} student and {teacher.shape[1]} teacher heads"
            )
        teacher = teacher[:, list(heads)]
    elif student.shape[1] != teacher.shape[1]:
        student, teacher = student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
    eps = 1e-12
    kl = (teacher * ((teacher + eps).log() - (student + eps).log())).sum(-1)  # (B, heads, T)
    real = mask.bool()[:, None, :].expand_as(kl)
    return kl[real].mean()


# --------------------------------------------------------------------------- the loss function
class DistillationLoss(nn.Module):
    """``loss_fn(model, batch)`` for the one training loop, holding the teacher (frozen) and any
    learned projections for hidden-state matching (trained with the student; they must be in
    the optimizer, see :meth:`parameters`)."""

    def __init__(self, teacher: SqueezeBert | None, student: SqueezeBert, config: DistillConfig) -> None:
        super().__init__()
        self.config = config
        self.teacher = [teacher]  # a list: keep the teacher out of this module's parameters
        if teacher is not None:
            teacher.eval().requires_grad_(False)
            check_compatible(teacher, student)
        s_cfg = student.config
        self.regression = s_cfg.problem_type == "regression"
        if config.needs_teacher_activations:
            if teacher is None:
                raise ValueError("hidden-state/attention distillation needs the teacher model")
            layer_map = config.layer_map or default_layer_map(s_cfg.num_hidden_layers, teacher.config.num_hidden_layers)
            for s, t in layer_map:
                if not 0 <= s <= s_cfg.num_hidden_layers or not 0 <= t <= teacher.config.num_hidden_layers:
                    raise ValueError(f"layer_map pair ({s}, {t}) is out of range")
            self.layer_map = layer_map
            if config.head_map is not None:
                if len(config.head_map) != s_cfg.num_hidden_layers:
                    raise ValueError(
                        f"head_map has {len(config.head_map)} layers, the student {s_cfg.num_hidden_layers}"
                    )
                for j, heads in enumerate(config.head_map):
                    if len(heads) != s_cfg.heads(j):
                        raise ValueError(f"head_map layer {j}: {len(heads)} heads, the student has {s_cfg.heads(j)}")
            t_h, s_h = teacher.config.hidden_size, s_cfg.hidden_size
            self.projection = nn.Linear(s_h, t_h) if s_h != t_h else None
        else:
            self.layer_map = []
            self.projection = None

    def forward(self, model: SqueezeBert, batch: dict[str, Tensor]) -> dict[str, Any]:
        cfg = self.config
        ids, mask, types = batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
        need_acts = cfg.needs_teacher_activations
        out = model.encode(ids, mask, types, output_hidden_states=need_acts, output_attentions=cfg.attention_weight > 0)
        logits = model.classify(out.last_hidden_state)
        logs: dict[str, Any] = {}
        if "teacher_logits" in batch:
            t_logits = batch["teacher_logits"]
            t_out = None
        else:
            if self.teacher[0] is None:
                raise ValueError("batch has no teacher_logits and no teacher model was given")
            with torch.no_grad(), self._teacher_precision():
                t_out = self.teacher[0].encode(
                    ids, mask, types, output_hidden_states=need_acts, output_attentions=cfg.attention_weight > 0
                )
                t_logits = self.teacher[0].classify(t_out.last_hidden_state).float()
        kd = logit_kd_loss(logits, t_logits, cfg.temperature, self.regression)
        loss = cfg.alpha * kd
        logs["kd"] = kd.detach()
        if cfg.alpha < 1 and "labels" in batch:
            labels = batch["labels"]
            task = (
                F.mse_loss(logits.squeeze(-1), labels.float()) if self.regression else F.cross_entropy(logits, labels)
            )
            loss = loss + (1 - cfg.alpha) * task
            logs["task"] = task.detach()
        if need_acts:
            if t_out is None or t_out.hidden_states is None:
                with torch.no_grad(), self._teacher_precision():
                    t_out = self.teacher[0].encode(
                        ids, mask, types, output_hidden_states=True, output_attentions=cfg.attention_weight > 0
                    )
            if cfg.hidden_weight > 0:
                h = sum(
                    hidden_mse(self._project(out.hidden_states[s]), t_out.hidden_states[t], mask)
                    for s, t in self.layer_map
                ) / len(self.layer_map)
                loss = loss + cfg.hidden_weight * h
                logs["hidden"] = h.detach()
            if cfg.attention_weight > 0:
                # layers whose attention block was pruned away have no distribution to match
                pairs = [(s, t) for s, t in self.layer_map if s > 0 and t > 0 and out.attentions[s - 1] is not None]
                if pairs:
                    kl = (
                        attention_kl(out.attentions[s - 1], t_out.attentions[t - 1], mask, self._heads(s))
                        for s, t in pairs
                    )
                    a = sum(kl) / len(pairs)
                    loss = loss + cfg.attention_weight * a
                    logs["attention"] = a.detach()
        return {"loss": loss, **logs}

    def _heads(self, layer: int) -> list[int] | None:
        """The teacher heads student layer ``layer`` (1-based, as in the layer map) matches."""
        return None if self.config.head_map is None else self.config.head_map[layer - 1]

    def _project(self, h: Tensor) -> Tensor:
        return h if self.projection is None else self.projection(h)

    def _teacher_precision(self) -> Any:
        return teacher_autocast(self.config.teacher_precision)


class FadingLoss(nn.Module):
    """A ``loss_fn`` that fades whole layers of the student out while it trains, around
    ``inner`` (the loss itself, a submodule: its parameters and state train and checkpoint as
    before). Faded layer ``i`` outputs ``s·layer(x) + (1 − s)·x``; ``s`` falls linearly from 1 to
    0 over the first ``examples`` training examples (counted over every process) and stays 0, so at
    the end the faded layers are the identity and removing them (:func:`squeezebert.prune.prune`)
    changes no output. Two-step pruning uses it to carve the kept layers out of the intermediate
    student without the drop a cut causes (``squeeze``'s ``fade``).

    How far the fade has gone is a buffer (``seen``), saved and restored with the loss's state, so
    a resumed run goes on from where it stopped. Evaluation (the model in eval mode) sees the
    current ``s`` and does not advance it. :meth:`remove` takes the hooks off the model."""

    def __init__(self, inner: nn.Module, model: SqueezeBert, layers: list[int], examples: int) -> None:
        super().__init__()
        if examples < 1:
            raise ValueError(f"the fade must last at least one example, got {examples}")
        n = model.config.num_hidden_layers
        if not layers or any(not 0 <= i < n for i in layers):
            raise ValueError(f"layers to fade must be among the model's {n}, got {layers}")
        self.inner = inner
        self.examples = examples
        self.register_buffer("seen", torch.zeros((), dtype=torch.float64))
        self._handles = [model.encoder.layers[i].register_forward_hook(self._fade) for i in layers]

    def scale(self) -> float:
        """The faded layers' share of their own output now (1: untouched, 0: the identity)."""
        return max(0.0, 1.0 - float(self.seen) / self.examples)

    def _fade(self, module: nn.Module, inputs: tuple, output: tuple) -> tuple:
        s = self.scale()
        if s >= 1.0:
            return output
        x, probs = output
        return s * x + (1.0 - s) * inputs[0], probs

    def forward(self, model: SqueezeBert, batch: dict[str, Tensor]) -> dict[str, Any]:
        if model.training:
            self.seen += batch["input_ids"].shape[0] * world().size
        return self.inner(model, batch)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def teacher_autocast(precision: str) -> Any:
    """The context the teacher's forward runs in at ``precision``: bf16 autocast for ``"bf16"``,
    else nothing (fp32)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def _teacher_states(teacher: SqueezeBert, batch: dict[str, Tensor], precision: str) -> tuple[Tensor, ...]:
    with torch.no_grad(), teacher_autocast(precision):
        ids, mask, types = batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
        out = teacher.encode(ids, mask, types, output_hidden_states=True)
    return out.hidden_states


def choose_teacher_precision(
    teacher: SqueezeBert, batches: list[dict[str, Tensor]], repeats: int = 5
) -> tuple[str, dict[str, Any]]:
    """fp32 or bf16 for the teacher's forward during distillation, by measurement on ``batches``
    (training batches, as the training loop pads them): bf16 where this CPU runs it natively,
    it is at least :data:`BF16_MIN_SPEEDUP` faster (interleaved timings, medians) and its hidden
    states are within :data:`BF16_MAX_ERROR` of fp32's. Returns the choice and what was measured."""
    from squeezebert.quantize import native_bf16
    from squeezebert.timing import time_interleaved

    if not native_bf16():
        return "fp32", {"chosen": "fp32", "reason": "this CPU has no native bf16"}
    teacher.eval()
    error = 0.0
    for batch in batches:  # also the warm-up of both precisions
        real = batch["attention_mask"].bool()
        for ref, got in zip(_teacher_states(teacher, batch, "fp32"), _teacher_states(teacher, batch, "bf16")):
            ref, got = ref[real].float(), got[real].float()
            error = max(error, float((got - ref).norm() / ref.norm().clamp_min(1e-12)))

    def forward(precision: str) -> Any:
        return lambda: [_teacher_states(teacher, b, precision) for b in batches]

    timed = time_interleaved({p: forward(p) for p in ("fp32", "bf16")}, warmup=0, repeats=repeats, max_seconds=30)
    speedup = timed["fp32"].p50 / timed["bf16"].p50
    chosen = "bf16" if speedup >= BF16_MIN_SPEEDUP and error <= BF16_MAX_ERROR else "fp32"
    return chosen, {
        "chosen": chosen,
        "fp32_ms": round(timed["fp32"].p50, 1),
        "bf16_ms": round(timed["bf16"].p50, 1),
        "speedup": round(speedup, 2),
        "max_relative_error": round(error, 5),
        "batches": len(batches),
    }


def check_compatible(teacher: SqueezeBert, student: SqueezeBert) -> None:
    """Fail early, saying what differs, when a teacher cannot teach this student."""
    t, s = teacher.config, student.config
    problems = []
    if t.vocab_size != s.vocab_size:
        problems.append(f"vocabulary size: teacher {t.vocab_size}, student {s.vocab_size}")
    if t.num_labels != s.num_labels:
        problems.append(f"number of labels: teacher {t.num_labels}, student {s.num_labels}")
    elif t.id2label != s.id2label:
        problems.append(f"label maps: teacher {t.id2label}, student {s.id2label}")
    if t.problem_type != s.problem_type:
        problems.append(f"problem type: teacher {t.problem_type}, student {s.problem_type}")
    if problems:
        raise ValueError("teacher and student do not match: " + "; ".join(problems))


__all__ = [
    "AUTO_HIDDEN_WEIGHT",
    "BF16_MAX_ERROR",
    "BF16_MIN_SPEEDUP",
    "PRUNED_HIDDEN_WEIGHT",
    "TEACHER_PRECISIONS",
    "DistillConfig",
    "DistillationLoss",
    "attention_kl",
    "check_compatible",
    "choose_teacher_precision",
    "default_layer_map",
    "hidden_mse",
    "logit_kd_loss",
    "teacher_autocast",
]
