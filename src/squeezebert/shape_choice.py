"""The shape a latency budget buys: the squeeze's choice of student shape (``--latency-budget``,
``--speedup``).

Every candidate shape is timed on this CPU through the runtime the student will deploy with, at
the user's own text lengths (:mod:`squeezebert.budget` builds and fits that table); the shapes
within the budget are pruned out of the teacher and ranked by how close their outputs stay to the
teacher's on held-out training examples; the choice is re-timed alone beside the deployed
teacher, and the budget shrunk or grown where that re-timing disagrees with the table. Moved out
of ``squeeze.py`` (which trains and reports) as a unit with its constants and tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from squeezebert.data import EncodedDataset
from squeezebert.model import SqueezeBert
from squeezebert.prune import pruning_batches
from squeezebert.surgery import StudentSpec
from squeezebert.train import predict

log = logging.getLogger(__name__)

#: Held-out training examples each candidate shape's agreement with the teacher is measured on.
CHECK_EXAMPLES = 1000
#: At most this many shapes (the widest within budget per layer count) are pruned and scored.
MAX_CANDIDATES = 4
#: Re-timings before the last choice is kept. Each times the chosen shape, pruned with the
#: teacher's weights, alone with the teacher as deployed, and every scored shape the table puts
#: faster beside them in the same rounds; the choice is kept only where it reaches the speed-up
#: (or ms budget) asked for, with no tolerance. With a 10% tolerance three `make demo` runs kept
#: choices re-timed at 2.60-2.79x of a 3x request and reported 2.34-2.80x ("NOT within"), while
#: the report's speed-up over the re-timed one read 0.90-1.12x in five squeezes: no bias for a
#: tolerance to correct (docs/RESULTS.md, sessions 21-22). Timing the faster alternatives in the same
#: rounds lets a shortfall fall back on a shape measured beside it rather than on a new
#: measurement, whose teacher may read 30% off (1.21-1.57 ms within a minute, session 21).
RETIME_ROUNDS = 3
#: A choice re-timed this much faster than asked (the speed-up over the one asked, or the budget
#: over its ms) grows the budget once by that surplus, less :data:`STEP_UP_HEADROOM`, and the
#: choice is made again among the larger shapes the table then puts within it. A table timed in a
#: slow phase of the machine reads small models slower than large ones (CoLA: 3L-4h-576f 0.88 ms
#: against the teacher's 2.80 in the table, 0.51 against 2.09 alone; 4.09x where 3x was asked, and
#: 5.50x in the report, one layer below the 4L student an earlier table had chosen on the same
#: data; docs/RESULTS.md, session 22). 1.25: over twice the report's spread around the re-timing.
STEP_UP = 1.25
#: Kept in hand when the budget grows: the report's speed-up read 0.90-1.12x the re-timed one in
#: five squeezes (sessions 21-22), so a grown budget aims 10% past the bar, not at it.
STEP_UP_HEADROOM = 1.1
#: The re-timing of the table's choice beside the teacher, before training, is timed the way the
#: squeeze's report times the deployed pair (each path at its median over this many blocks,
#: :data:`RETIME_PAUSE_S` apart; ``squeeze.REPORT_BLOCKS``): in one
#: block it read SST-2's 5L-3h-384f at 2.82x with the teacher at 6.85 ms, where the table had put
#: the teacher at 4.74 ms and the next block read it at 4.99 (docs/RESULTS.md, session 25), and the
#: squeeze stepped down a width on that one block.
RETIME_BLOCKS = 3
#: Seconds between those blocks (the report's spacing, ``squeeze.REPORT_BLOCK_PAUSE_S``).
RETIME_PAUSE_S = 10.0
#: How a budgeted squeeze removes the depth its chosen shape drops: ``layers`` (whole layers, the
#: default) or ``blocks`` (every layer kept, the same number of attention/FFN blocks removed, see
#: :func:`squeezebert.prune.choose_blocks`).
PRUNE_UNITS = ("layers", "blocks")


def check_indices(n_train: int, calibration: set[int], n: int, seed: int) -> list[int]:
    """Up to ``n`` training indices not among the ``calibration`` ones (held out from pruning).
    When the calibration took every training example (``make demo``'s 480 sentences), the
    calibration examples themselves: scored on nothing, every candidate's closeness was ``nan``
    and the choice among them arbitrary."""
    order = np.random.default_rng(seed + 1).permutation(n_train).tolist()
    rest = [i for i in order if i not in calibration]
    return (rest or order)[:n]


def choose_shape(
    teacher: SqueezeBert,
    train: EncodedDataset,
    tokenizer: Any,
    calibration: list[dict],
    previous: dict[str, Any] | None,
    runtime: str,
    threads: int | None,
    latency_budget_ms: float | None,
    speedup: float | None,
    budget_batch: int,
    seed: int,
    measure: Any = None,
    deploy_teacher: Callable[[dict[int, list[dict]]], tuple[str, torch.nn.Module, int] | None] | None = None,
    prune_unit: str = "layers",
    budget_recipe: str = "auto",
) -> tuple[StudentSpec, dict[str, Any]]:
    """Time every candidate shape, keep those within the budget, prune the teacher to each
    layer count's widest such shape, and choose the one that agrees most with the teacher on
    held-out training examples; re-time it alone with the teacher (pruned, with the teacher's
    weights: :func:`squeezebert.budget.measure_models`), with every scored shape the table puts
    faster beside it, and keep it if it reaches the budget there. Where it falls short, shrink the
    budget by the shortfall and choose again, by the same signal, among the shapes the table puts
    within that and those re-timed within the budget already; where it runs :data:`STEP_UP` times
    faster than asked, grow the budget once by that surplus (less :data:`STEP_UP_HEADROOM`) and
    choose again the same way among larger shapes. A shape not yet re-timed is re-timed before it
    is taken (up to :data:`RETIME_ROUNDS` re-timings). ``measure``: the table's timer
    (:data:`squeezebert.budget.Measure`; default: :func:`squeezebert.budget.measure_configs`
    through ``runtime``).

    ``previous``: the choice an interrupted run recorded (its report); resumed, that shape is
    taken again without timing anything.

    ``deploy_teacher(batches)``: exports the real teacher the way the report will, given the
    table's timing batches for its fallback comparison (``(path name, module, bytes)`` or None);
    it is timed in the same rounds as the candidates and a ``speedup`` is taken
    against it, not against the teacher's random-weight twin. The speed-up the user asked for is
    against the teacher's fastest *deployable* path, and the real teacher often deploys through a
    slower recipe than its twin (4 of the 5 tasks re-run in session 9: static int8 missed the
    agreement bar, so the teacher ran on run-time scales); timed as a twin, the budget came out
    smaller than asked and the students ran 3.5-4.7x where 3x was asked (docs/RESULTS.md).
    ``budget_recipe``: the int8 recipe the candidates are timed through
    (:func:`squeezebert.budget.table_recipe`; ``auto``: the deployed teacher's).

    ``prune_unit="blocks"``: a chosen shape with fewer layers than the teacher keeps all of them
    and removes as many attention/FFN blocks instead (two per dropped layer). A removed block
    still costs its add and LayerNorm, and an attention block more than an FFN block on longer
    texts, so the blocks are chosen here and timed beside the whole-layer shape; where they would
    miss the budget, whole layers are removed after all."""
    from squeezebert.budget import (
        FP32_RECIPE,
        Shape,
        candidate_shapes,
        frontier,
        latency_table,
        measure_configs,
        measure_models,
        table_recipe,
        timing_batches,
    )
    from squeezebert.prune import choose_layers, prune_model

    if previous is not None:
        c = previous["chosen"]
        log.info("resuming with the shape the interrupted run chose: %s", c["shape"])
        spec = StudentSpec.from_construction(
            "pruned",
            layers=None if c.get("blocks") else c["teacher_layers"],
            heads=c["heads"] if c["heads"] != teacher.config.num_attention_heads else None,
            ffn=c["ffn"] if c["ffn"] != teacher.config.intermediate_size else None,
            blocks=c.get("blocks"),
        )
        return spec, previous
    key = f"batch{budget_batch}"
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    batches = timing_batches(train, tokenizer, sorted({1, budget_batch}), seed=seed)
    deployed = deploy_teacher(batches) if deploy_teacher is not None else None
    if deployed is not None:
        seconds["the teacher's export"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
    teacher_recipe = getattr(deployed[1], "int8_recipe", None) if deployed is not None else None
    teacher_precision = deployed[0].rsplit("-", 1)[-1] if deployed is not None else None  # "teacher openvino-fp32"
    recipe, recipe_why = table_recipe(budget_recipe, teacher_recipe, teacher_precision)
    # what the report and the plot name: OpenVINO in fp32 where the teacher deployed in fp32
    timed_through = "openvino-fp32" if runtime == "openvino-int8" and recipe == FP32_RECIPE else runtime
    if measure is None:
        extra = {deployed[0]: deployed[1].classifier.forward} if deployed is not None else None

        def measure(configs: dict) -> dict:
            return measure_configs(configs, batches, runtime, threads, recipe=recipe, extra=extra)

    shapes = candidate_shapes(teacher.config)
    log.info(
        "timing the teacher and %d candidate shapes through %s%s", len(shapes), timed_through,
        f" ({recipe}: {recipe_why})" if runtime == "openvino-int8" else "",
    )  # fmt: skip
    twin_ms, table, fit = latency_table(teacher.config, shapes, measure)
    teacher_ms = fit["extra_ms"].get(deployed[0], twin_ms) if deployed is not None else twin_ms
    budget_ms = latency_budget_ms if latency_budget_ms is not None else teacher_ms[key] / speedup
    log.info(
        "teacher %.2f ms (%s; its random-weight twin %.2f ms), budget %.2f ms at batch %d; candidates: %s",
        teacher_ms[key], deployed[0] if deployed is not None else "random-weight twin", twin_ms[key], budget_ms,
        budget_batch,
        ", ".join(f"{r.shape.name} {r.latency_ms[key]:.2f}" for r in table),
    )  # fmt: skip
    front = frontier(table, budget_ms, key)
    notes = []
    none_within = not front
    if none_within:
        fastest = min(table, key=lambda r: r.latency_ms[key])
        front = [fastest]
        notes.append(
            f"NO candidate shape met the budget of {budget_ms:.2f} ms at batch {budget_batch}: the fastest one "
            f"({fastest.shape.name}, {fastest.latency_ms[key]:.2f} ms) was distilled instead"
        )
    front = front[:MAX_CANDIDATES]
    seconds["latency table"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    # The accuracy signal: how close each pruned candidate's outputs are to the teacher's, right
    # after pruning, on training examples the pruning did not see (never the dev set).
    cal_ids = {int(i) for b in pruning_batches(calibration) for i in b.get("index", [])}
    check = check_indices(len(train), cal_ids, CHECK_EXAMPLES, seed)
    check_set = subset(train, check)
    reference = predict(teacher, check_set)
    kept_by_count = {teacher.config.num_hidden_layers: list(range(teacher.config.num_hidden_layers))}
    pruned: dict[str, SqueezeBert] = {}

    def score(cands: list[Any]) -> None:
        """Prune the teacher to each candidate's shape and score it against the teacher."""
        if not cands:
            return
        # Greedy layer dropping is deterministic: one pass down to the fewest layers gives the
        # layers every candidate keeps.
        fewest = min(c.shape.layers for c in cands)
        if fewest not in kept_by_count:
            _, steps = choose_layers(teacher, fewest, pruning_batches(calibration))
            kept_by_count.update({len(step["kept"]): step["kept"] for step in steps})
        for cand in cands:
            s = cand.shape
            model, _ = prune_model(
                teacher,
                pruning_batches(calibration),
                layers=kept_by_count[s.layers],
                heads=s.heads if s.heads != teacher.config.num_attention_heads else None,
                ffn=s.ffn if s.ffn != teacher.config.intermediate_size else None,
            )
            cand.agreement, cand.score = closeness(predict(model, check_set), reference)
            pruned[s.name] = model
            log.info(
                "candidate %s: %.2f ms, agreement after pruning %.4f, score %.4f",
                s.name, cand.latency_ms[key], cand.agreement, cand.score,
            )  # fmt: skip

    score(front)
    # Ties (equal scores) go to the larger shape: more capacity for the distillation to use.
    ranked = sorted(front, key=lambda r: (r.score, r.parameters), reverse=True)
    seconds["pruning and scoring the candidates"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()

    def against_budget(teacher_ms: float, ms: float) -> float:
        """How far a shape re-timed at ``ms`` beside the teacher's ``teacher_ms`` runs within the
        budget: its speed-up over the one asked, or the budget over its ms (1 or more: within)."""
        return teacher_ms / ms / speedup if latency_budget_ms is None else budget_ms / ms

    def retime(cands: list[Any]) -> dict[str, dict[str, Any]]:
        """The candidates, pruned with the teacher's weights, and the teacher as deployed (else its
        own model through ``runtime``), timed alone together: per shape name, its record."""
        models = {c.shape.name: pruned[c.shape.name] for c in cands}
        if deployed is None:
            models["teacher"] = teacher
        extra = {"teacher": deployed[1].classifier.forward} if deployed is not None else None
        ms = measure_models(
            models, batches, runtime, threads, recipe=recipe, extra=extra, blocks=RETIME_BLOCKS,
            pause_s=RETIME_PAUSE_S,
        )  # fmt: skip
        teacher_now = ms["teacher"][key]
        out = {}
        for c in cands:
            ms_now = ms[c.shape.name][key]
            ok = against_budget(teacher_now, ms_now) >= 1
            out[c.shape.name] = {"shape": c.shape.name, "ms": ms_now, "teacher_ms": teacher_now,
                                 "speedup": round(teacher_now / ms_now, 2), "within": ok}  # fmt: skip
        return out

    # The table times 26 models in one set of rounds, random weights for all but the teacher, and
    # on two shared cores it has been off by a third: on STS-B (session 21) it read the deployed
    # teacher at 2.61 ms against 1.72 re-timed alone, and a 5L-2h-192f student it put at 3.0x ran
    # 2.3x in the report. So the choice is re-timed alone with the teacher before any training,
    # the scored shapes the table puts faster beside it; where it falls short, the budget is
    # shrunk by the shortfall and the choice made again among the shapes the table puts within
    # that (pruned and scored as above) and those already re-timed within the budget; where it
    # runs well ahead (STEP_UP), the budget grows once by the surplus, the same way.
    confirmation: list[dict[str, Any]] = []
    chosen = ranked[0]
    passed: set[str] = set()
    grown = False  # the budget grows at most once
    latest: dict[str, dict[str, Any]] = {}  # each re-timed shape's record in its latest re-timing
    if not none_within:  # (where no shape met the budget, the fastest is distilled: nothing to re-check)
        for round_ in range(RETIME_ROUNDS):
            beside = [
                r for r in table
                if r.score is not None and r is not chosen and r.latency_ms[key] < chosen.latency_ms[key]
            ]  # fmt: skip
            timed = retime([chosen, *beside])
            c = {**timed[chosen.shape.name], "beside": [timed[r.shape.name] for r in beside]}
            confirmation.append(c)
            latest.update(timed)
            passed = {name for name, rec in latest.items() if rec["within"]}
            log.info(
                "re-timed alone: %s %.2f ms, the teacher %.2f ms (%.2fx)%s; beside it: %s", chosen.shape.name,
                c["ms"], c["teacher_ms"], c["speedup"], "" if c["within"] else ": short of the budget",
                ", ".join(f"{b['shape']} {b['speedup']:.2f}x" for b in c["beside"]) or "none",
            )  # fmt: skip
            ratio = against_budget(c["teacher_ms"], c["ms"])
            last = round_ == RETIME_ROUNDS - 1
            if c["within"] and (ratio < STEP_UP or grown or last):
                break
            grown = grown or c["within"]
            # a shortfall shrinks the budget by itself; a surplus grows it, less the headroom
            c["next_budget_ms"] = chosen.latency_ms[key] * (ratio / STEP_UP_HEADROOM if c["within"] else ratio)
            failed = set(latest) - passed
            # after the last re-timing, only shapes already re-timed within the budget can be chosen
            pool = [] if last else [r for r in frontier(table, c["next_budget_ms"], key) if r.shape.name not in failed]
            pool = pool[:MAX_CANDIDATES] + [r for r in table if r.shape.name in passed and r not in pool]
            if not pool:
                break
            score([r for r in pool if r.score is None])
            before, chosen = chosen, max(pool, key=lambda r: (r.score, r.parameters))
            if chosen.shape.name in passed:
                if chosen is not before:
                    c["then"] = chosen.shape.name
                break
        frontier(table, budget_ms, key)  # the table's within-budget column: against the budget asked
        first = confirmation[0]
        if chosen.shape.name != first["shape"] or chosen.shape.name not in passed:
            how = (
                f"more than {STEP_UP - 1:.0%} faster than asked, so the budget was grown by the surplus (less "
                f"{STEP_UP_HEADROOM - 1:.0%} kept in hand)"
                if first["within"]
                else "short of the budget, so the budget was shrunk by the shortfall"
            )
            notes.append(
                f"re-timed alone with the teacher, the table's choice {first['shape']} ran {first['ms']:.2f} ms, "
                f"{first['speedup']:.2f}x the teacher ({first['teacher_ms']:.2f} ms): {how}; "
                + (
                    f"{chosen.shape.name} ({latest[chosen.shape.name]['speedup']:.2f}x alone), the closest to the "
                    "teacher of the shapes re-timed within the budget or put within the changed one by the table, "
                    "was distilled instead"
                    if chosen.shape.name in passed
                    else f"none of the {len(latest)} shapes re-timed met it; {chosen.shape.name}, the last "
                    "tried, was kept"
                )
            )
    chosen.chosen = True
    # within the budget: by its re-timing where it had one (a grown budget may take a shape the
    # table put over the one asked), else by the table
    met = chosen.shape.name in passed if confirmation else chosen.within_budget
    seconds["re-timing the choice alone"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    shape: Shape = chosen.shape
    if prune_unit not in PRUNE_UNITS:
        raise ValueError(f"prune_unit must be one of {PRUNE_UNITS}, got {prune_unit!r}")
    depth = teacher.config.num_hidden_layers
    blocks = 2 * shape.layers if prune_unit == "blocks" and shape.layers < depth else None
    block_check = None
    if blocks is not None:
        # Which blocks go decides the cost, and a removed block keeps its LayerNorm: the 6 of 12
        # blocks chosen ran 9%, 21% and 17% slower than 3 whole layers on MRPC, STS-B and CoLA
        # (docs/RESULTS.md, session 17). So the blocks the construction will remove are chosen
        # here (the construction repeats the same deterministic choice) and timed beside the shape.
        blocked, _ = prune_model(
            teacher,
            pruning_batches(calibration),
            heads=shape.heads if shape.heads != teacher.config.num_attention_heads else None,
            ffn=shape.ffn if shape.ffn != teacher.config.intermediate_size else None,
            blocks=blocks,
        )
        ms = measure({"blocks": blocked.config, "layers": shape.config(teacher.config)})
        # the ms the blocks may take: the budget, or the re-timed choice's own where a grown budget
        # took a shape the table put over it
        limit_ms = max(budget_ms, chosen.latency_ms[key]) if met else budget_ms
        ratio = ms["blocks"][key] / ms["layers"][key]
        block_check = {
            "removed": [f"{i}.{kind}" for i, kind in blocked.config.removed_blocks],
            "ratio_to_layers": ratio,
            "latency_ms": chosen.latency_ms[key] * ratio,
            "within_budget": chosen.latency_ms[key] * ratio <= limit_ms,
        }
        log.info(
            "%d blocks instead of %d layers: %.2fx the layers' time, %.2f ms against the budget of %.2f ms",
            blocks, shape.layers, ratio, block_check["latency_ms"], limit_ms,
        )  # fmt: skip
        if (met or chosen.within_budget) and not block_check["within_budget"]:
            notes.append(
                f"{blocks} blocks ran {ratio:.2f}x the time of {shape.layers} whole layers "
                f"({block_check['latency_ms']:.2f} ms, over the budget of {limit_ms:.2f} ms): whole layers are removed"
            )
            blocks = None
        seconds["choosing and timing the blocks"] = round(time.perf_counter() - started, 1)
    log.info("shape choice took %s", ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    spec = StudentSpec.from_construction(
        "pruned",
        layers=None if blocks else kept_by_count[shape.layers],
        heads=shape.heads if shape.heads != teacher.config.num_attention_heads else None,
        ffn=shape.ffn if shape.ffn != teacher.config.intermediate_size else None,
        blocks=blocks,
    )
    report = {
        "runtime": timed_through,
        "recipe": recipe if runtime == "openvino-int8" else None,
        "recipe_why": recipe_why if runtime == "openvino-int8" else None,
        "teacher_recipe": teacher_recipe,
        "threads": threads or torch.get_num_threads(),
        "batch": budget_batch,
        "budget_ms": budget_ms,
        "speedup": speedup,
        "teacher_ms": teacher_ms,
        "teacher_path": deployed[0] if deployed is not None else f"random-weight twin through {runtime}",
        "teacher_twin_ms": twin_ms,
        "teacher_measured_ms": fit["teacher_measured_ms"],
        "fit_residual": fit["residual"],
        "candidates": [r.to_dict() for r in table],
        "chosen": {"shape": shape.name, "layers": shape.layers, "heads": shape.heads, "ffn": shape.ffn,
                   "teacher_layers": kept_by_count[shape.layers], "blocks": blocks, "teacher_blocks": 2 * depth,
                   "block_check": block_check,
                   "latency_ms": chosen.latency_ms,
                   "agreement": chosen.agreement, "score": chosen.score},
        "met": met,
        "confirmation": confirmation,
        "signal": (
            f"closeness to the teacher right after pruning, on {len(check)} held-out training examples: "
            + ("minus the KL divergence of the label distributions" if teacher.config.num_labels > 1
               else "1 - the relative squared error")
        ),
        "notes": notes,
        "seconds": seconds,
    }  # fmt: skip
    return spec, report


def closeness(got: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """``(agreement, score)`` of a candidate's outputs against the teacher's on the same texts.

    Classification: agreement = the share of equal argmax labels; score = minus the mean KL
    divergence of the candidate's label distribution from the teacher's. The choice ranks by the
    score: agreement alone ties when pruned candidates collapse onto the majority label (CoLA,
    session 8: a 2-layer and a 1-layer candidate both agreed 79.5% by always answering
    "acceptable", and the tie went to the 1-layer one, which distilled to 10.7 MCC against the
    teacher's 32.8). Regression: both are 1 - the relative squared error (1 = the teacher's
    outputs exactly, 0 = no better than predicting their mean).
    """
    if reference.ndim == 2 and reference.shape[1] > 1:
        agreement = float((got.argmax(-1) == reference.argmax(-1)).mean())
        log_t = torch.log_softmax(torch.from_numpy(reference).double(), -1)
        log_s = torch.log_softmax(torch.from_numpy(got).double(), -1)
        kl = float((log_t.exp() * (log_t - log_s)).sum(-1).mean())
        return agreement, -kl
    err = float(((got - reference) ** 2).mean() / max(float(reference.var()), 1e-12))
    return 1.0 - err, 1.0 - err


def subset(data: EncodedDataset, indices: list[int]) -> EncodedDataset:
    return EncodedDataset(
        input_ids=[data.input_ids[i] for i in indices],
        token_type_ids=[data.token_type_ids[i] for i in indices],
        labels=None if data.labels is None else [data.labels[i] for i in indices],
        lengths=[data.lengths[i] for i in indices],
        is_regression=data.is_regression,
        lines=[data.lines[i] for i in indices] if data.lines else [],
    )
