"""int8 with a proof: calibrate on training slices, then measure on held-out cases what int8 changes.

`quantize` takes a checkpoint and the labelled data it was trained on. The
cases the checkpoint learnt from calibrate NNCF's post-training quantization
of its OpenVINO network (real preprocessed slices with brain, as inference
feeds them; never random ones); the cases it did not learn from are then
segmented twice, by the torch fp32 network (the reference) and by the int8
model as saved, and the result says per case how far the int8 mask is from
the fp32 mask (Dice) and how both score against the label with the
challenge's metrics. The int8 model is written beside the checkpoint
(`sparseg.derived`), its stamp holding the calibration and this agreement;
`--precision int8` then runs it and says how well it agreed.

Which cases are which: the checkpoint records the cases it trained on and
those it held out (`split` in its header); the cases it trained on calibrate,
and every other case of the data is held out (its validation fold, and any
case it never saw). For a checkpoint of an earlier SPARSeg, which records no
split, the split is recomputed from its config, with a warning (`split_cases`).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from sparseg.cases import Case, data_inputs, find_any_cases
from sparseg.config import (
    INT8_MIN_AGREEMENT,
    EvaluationConfig,
    InferenceConfig,
    QuantizationConfig,
    TrainConfig,
)
from sparseg.data import (
    FINGERPRINT_FORMAT,
    ROLES,
    ValidationCase,
    fingerprint,
    read_validation_case,
    stratified_folds,
)
from sparseg.derived import INT8, OPENVINO, Derived, current
from sparseg.errors import InputError
from sparseg.evaluation import RULES, score_row
from sparseg.inference import Predictor
from sparseg.io import require_writable
from sparseg.metrics import dice
from sparseg.model import read_header, read_metadata
from sparseg.networks import OpenVINONetwork
from sparseg.paths import require_apart
from sparseg.runtime import resolve_runtime

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class CaseAgreement:
    case_id: str
    dice_int8_vs_fp32: float
    fp32_voxels: int
    int8_voxels: int
    dsc_fp32: float
    dsc_int8: float
    masd_fp32: float
    masd_int8: float
    nsd_fp32: float
    nsd_int8: float
    seconds_fp32: float
    seconds_int8: float


@dataclass(frozen=True)
class Agreement:
    cases: list[CaseAgreement]

    @property
    def smallest(self) -> float:
        return min(c.dice_int8_vs_fp32 for c in self.cases)

    @property
    def holds(self) -> bool:
        """Whether int8 keeps every held-out case's mask within `INT8_MIN_AGREEMENT` of fp32's."""
        return self.smallest >= INT8_MIN_AGREEMENT

    def summary(self) -> dict:
        def mean(name: str) -> float:
            values = [getattr(c, name) for c in self.cases if np.isfinite(getattr(c, name))]
            return float(np.mean(values)) if values else float("nan")

        agreements = [c.dice_int8_vs_fp32 for c in self.cases]
        return {
            "held_out_cases": len(self.cases),
            "dice_int8_vs_fp32": {"smallest": min(agreements), "median": statistics.median(agreements),
                                  "identical_cases": sum(a == 1.0 for a in agreements)},
            "required": INT8_MIN_AGREEMENT,
            "holds": self.holds,
            "against_labels": {precision: {metric: mean(f"{metric}_{precision}") for metric in ("dsc", "masd", "nsd")}
                               for precision in ("fp32", "int8")},
            "median_seconds": {precision: statistics.median(getattr(c, f"seconds_{precision}") for c in self.cases)
                               for precision in ("fp32", "int8")},
        }


@dataclass(frozen=True)
class QuantizationResult:
    paths: Derived
    calibration: dict
    agreement: Agreement
    recalibration: dict


def split_cases(metadata: dict, cases: list[ValidationCase], train: TrainConfig) -> tuple[list, list, str]:
    """(calibration cases, held-out cases, how they were chosen) of the checkpoint with `metadata`, trained with
    `train`: its training cases calibrate, and every other case is held out.

    A checkpoint records its split (`split.training`, `split.held_out`). One saved by an earlier SPARSeg does
    not, and its data fingerprint lists its held-out cases with its training cases: then, when the data is its
    own, the split is recomputed from its config's folds and seed, as the trainer made it (said in a warning)."""
    ids = {c.case_id for c in cases}
    split = metadata.get("split")
    if isinstance(split, dict) and isinstance(split.get("training"), list):
        trained_on = set(split["training"])
        how = (f"the checkpoint's recorded split: its training cases calibrate, the others are held out "
               f"({len(ids & set(split.get('held_out') or []))} of them its validation fold)")
    else:
        data = metadata.get("data") if isinstance(metadata.get("data"), dict) else {}
        trained_on = set(data.get("case_ids") or [])
        fold = metadata.get("fold")
        log.warning("the checkpoint does not record which cases it held out (saved by an earlier SPARSeg)%s",
                    ": its split is recomputed from its config's folds and seed" if ids == trained_on else "")
        if ids == trained_on and isinstance(fold, int) and 0 <= fold < train.folds <= len(cases):
            trained_on -= set(stratified_folds(cases, train.folds, train.fold_seed)[fold])
            how = f"the checkpoint's split, recomputed: fold {fold} of {train.folds} held out"
        else:
            how = "held out: the cases the checkpoint was not trained on"
    calibration = [c for c in cases if c.case_id in trained_on]
    validation = [c for c in cases if c.case_id not in trained_on]
    if not calibration:
        raise InputError("none of these cases is one the checkpoint was trained on: calibrate with its training data")
    if not validation:
        raise InputError("every case here was in the checkpoint's training data: add cases it was not trained on "
                         "(its validation fold)")
    return calibration, validation, how


def _require_trained_files(checkpoint: Path, metadata: dict, cases: list[Case]) -> None:
    """The cases that share an id with the checkpoint's training data must be its files, byte for byte (its data
    fingerprint), else calibration and the held-out split would rest on other data under the same names."""
    data = metadata.get("data") if isinstance(metadata.get("data"), dict) else {}
    recorded = data.get("files_sha256") if isinstance(data.get("files_sha256"), dict) else {}
    trained = set(data.get("case_ids") or [])
    mine = [case for case in cases if case.case_id in trained]
    if not recorded or not mine:
        return
    ours = fingerprint(mine)["files_sha256"]
    if data.get("format") != FINGERPRINT_FORMAT:  # an earlier SPARSeg keyed the files by name
        ours = {Path(getattr(case, field)).name: ours[f"{case.case_id}/{role}"] for case in mine
                for role, field in ROLES if getattr(case, field) is not None}
    differing = sorted(key for key, value in ours.items() if key in recorded and recorded[key] != value)
    if differing:
        raise InputError(f"{checkpoint}: the data holds other files than those it was trained on under the same case "
                         f"ids ({', '.join(differing[:10])}{' ...' if len(differing) > 10 else ''}); quantize with its "
                         "own training data")


def calibration_slices(predictor: Predictor, volumes: Iterable[tuple], count: int, seed: int = 0,
                       lesion_share: float = 0.0) -> np.ndarray:
    """`count` preprocessed slices with brain, drawn at random from the (ADC, Z_ADC) or (ADC, Z_ADC, label)
    volumes as inference prepares them; with labels, `lesion_share` of them from slices whose label holds
    lesion (as many as there are), the rest among the others. Shape: -> (N, C, H, W) float32."""
    inputs, lesion = [], []
    for volume in volumes:
        adc, z, label = (*volume, None)[:3]
        prepared = predictor.prepare(adc, z)
        inputs.append(prepared.inputs)
        run = np.arange(adc.shape[0])[prepared.window.slices]
        lesion.append(label[run].reshape(len(run), -1).any(axis=1) if label is not None
                      else np.zeros(len(run), dtype=bool))
    inputs, lesion = np.concatenate(inputs), np.concatenate(lesion)
    if len(inputs) == 0:
        raise InputError("the calibration cases have no slice with brain")
    return inputs[draw_slices(lesion, count, lesion_share, seed)].astype(np.float32)


def draw_slices(lesion: np.ndarray, count: int, lesion_share: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of `count` slices (all, when there are fewer), `lesion_share` of them among those whose
    `lesion` flag is set (as many as there are) and the rest at random among the others."""
    count = min(count, len(lesion))
    rng = np.random.default_rng(seed)
    with_lesion = np.flatnonzero(lesion)
    wanted = min(len(with_lesion), round(lesion_share * count))
    first = rng.choice(with_lesion, size=wanted, replace=False) if wanted else np.zeros(0, dtype=int)
    rest = np.setdiff1d(np.arange(len(lesion)), first)
    return np.sort(np.concatenate([first, rng.choice(rest, size=count - wanted, replace=False)]))


def logits_of(model: Any, slices: np.ndarray, batch: int = 16) -> np.ndarray:
    """An OpenVINO model's (or compiled model's) logits on `slices`. Shape: (N, C, H, W) -> (N, H, W)."""
    import openvino as ov

    compiled = model if isinstance(model, ov.CompiledModel) else ov.Core().compile_model(
        model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})
    return np.concatenate([compiled(np.ascontiguousarray(slices[i : i + batch]))[0][:, 0]
                           for i in range(0, len(slices), batch)])


def logit_cut(threshold: float) -> float:
    """The logit a sigmoid threshold cuts at: probability > threshold <=> logit > logit_cut(threshold)."""
    return float(np.log(threshold / (1 - threshold)))


def best_logit_offset(fp32: np.ndarray, int8: np.ndarray, threshold: float, reach: float = 3.0,
                      step: float = 0.01) -> tuple[float, float, float]:
    """The shift of the int8 logits, within +-`reach`, whose mask at `threshold` has the largest Dice with the
    fp32 mask, pooled over every voxel (the smallest shift among equals). Returns (shift, Dice without it, Dice
    with it). Only voxels whose int8 logit lies within `reach` of the cut can change, so only they are swept."""
    cut = logit_cut(threshold)
    reference = fp32 > cut
    band = np.abs(int8 - cut) <= reach
    fixed_in = (int8 > cut) & ~band
    both_fixed, in_fixed = int(np.sum(fixed_in & reference)), int(fixed_in.sum())
    total_reference = int(reference.sum())
    logits, agree = int8[band], reference[band]
    shifts = np.round(np.arange(-reach, reach + step / 2, step), 6)
    shifts = shifts[np.argsort(np.abs(shifts), kind="stable")] + 0.0  # + 0.0: no -0.0
    best = (0.0, -1.0)
    without = None
    for shift in shifts:
        marked = logits + shift > cut
        both, size = both_fixed + int(np.sum(marked & agree)), in_fixed + int(marked.sum())
        score = 1.0 if total_reference + size == 0 else 2 * both / (total_reference + size)
        if shift == 0:
            without = score
        if score > best[1]:
            best = (float(shift), score)
    return best[0], float(without), best[1]


def volume_logit_offset(fp32: np.ndarray, int8: np.ndarray, threshold: float, reach: float = 3.0
                        ) -> tuple[float, float, float]:
    """The shift of the int8 logits, within +-`reach`, after which as many voxels lie above the cut as fp32's
    logits have there (midway between the int8 logits that bound that count). Returns (shift, fp32's voxel count,
    int8's without the shift). No voxel above the cut in fp32 leaves it at 0."""
    cut = logit_cut(threshold)
    wanted, had = int(np.sum(fp32 > cut)), int(np.sum(int8 > cut))
    if wanted == 0 or wanted == int8.size:
        return 0.0, float(wanted), float(had)
    ordered = np.partition(int8.ravel(), (int8.size - wanted - 1, int8.size - wanted))
    below, lowest_in = float(ordered[int8.size - wanted - 1]), float(ordered[int8.size - wanted])
    shift = float(np.clip(cut - (below + lowest_in) / 2, -reach, reach))
    return round(shift, 4) + 0.0, float(wanted), float(had)


def with_logit_offset(model: Any, offset: float) -> Any:
    """The OpenVINO model with `offset` added to its output (the logits), its output names kept."""
    from openvino import opset13 as ops

    result = model.get_results()[0]
    source = result.input_value(0)
    names = source.get_names()
    shifted = ops.add(source, ops.constant(np.float32(offset)))
    result.input(0).replace_source_output(shifted.output(0))
    if names:
        source.get_tensor().set_names(set())
        shifted.output(0).get_tensor().set_names(names)
    return model


def write_int8(checkpoint: Path, calibration: np.ndarray, provenance: dict,
               settings: QuantizationConfig = QuantizationConfig(), threshold: float | None = None) -> Derived:
    """NNCF's post-training quantization of the checkpoint's OpenVINO fp32 network with `settings`, calibrated
    on `calibration` (N, C, H, W), its logits then shifted (`settings.recalibrate`) so its masks at `threshold`
    agree best with fp32's on those slices; saved beside the checkpoint as its int8 model, with `provenance`,
    the settings and the shift in its stamp."""
    import nncf
    import openvino as ov

    weights = read_metadata(checkpoint)["weights_sha256"]
    fp32_model = ov.Core().read_model(str(current(checkpoint, OPENVINO, weights).files[".xml"]))
    recalibrate = settings.recalibrate != "off" and threshold is not None
    cut = 0.0 if threshold is None else logit_cut(threshold)
    fp32_logits = logits_of(fp32_model, calibration) if recalibrate or settings.accuracy_control else None
    dataset = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
    options: dict[str, Any] = {"preset": nncf.QuantizationPreset(settings.preset),
                               "subset_size": len(calibration),
                               "fast_bias_correction": settings.fast_bias_correction}
    if settings.smooth_quant_alpha is not None:
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

        options["model_type"] = nncf.ModelType.TRANSFORMER
        alphas = AdvancedSmoothQuantParameters(convolution=settings.smooth_quant_alpha,
                                               matmul=settings.smooth_quant_alpha)
        options["advanced_parameters"] = AdvancedQuantizationParameters(smooth_quant_alphas=alphas)
    if settings.accuracy_control:
        model = nncf.quantize_with_accuracy_control(
            fp32_model, dataset, _agreement_dataset(calibration, fp32_logits, cut), _agreement_metric(cut),
            max_drop=1 - INT8_MIN_AGREEMENT, drop_type=nncf.DropType.ABSOLUTE, **options)
    else:
        model = nncf.quantize(fp32_model, dataset, **options)
    recalibration = {"threshold": threshold, "logit_offset": 0.0, "criterion": "off"}
    if recalibrate:
        int8_logits = logits_of(model, calibration)
        if settings.recalibrate == "volume":
            offset, wanted, had = volume_logit_offset(fp32_logits, int8_logits, threshold)
            measured = {"calibration_voxels": {"fp32": wanted, "int8_before": had}}
        else:
            offset, before, after = best_logit_offset(fp32_logits, int8_logits, threshold)
            measured = {"calibration_dice_vs_fp32": {"before": before, "after": after}}
        recalibration = {"threshold": threshold, "logit_offset": offset, "criterion": settings.recalibrate,
                         "threshold_equivalent": float(1 / (1 + np.exp(offset - cut))), **measured}
        if offset:
            model = with_logit_offset(model, offset)
        log.info("int8 logits shifted by %+.2f (%s; as a threshold of %.3f instead of %g)", offset,
                 settings.recalibrate, recalibration["threshold_equivalent"], threshold)
    provenance = {**provenance, "calibration": {**provenance.get("calibration", {}), "slices": len(calibration),
                                                "nncf": nncf.__version__, "settings": asdict(settings)},
                  "recalibration": recalibration}
    return Derived.of(checkpoint, INT8).save(model, {"weights_sha256": weights, **provenance})


AGREEMENT_ITEM_SLICES = 8
"""Slices per item of accuracy-aware quantization's validation set (NNCF ranks layers by per-item values)."""


def _agreement_dataset(calibration: np.ndarray, fp32_logits: np.ndarray, cut: float) -> Any:
    """Accuracy-aware quantization's validation items: groups of calibration slices with their fp32 masks."""
    import nncf

    return nncf.Dataset([(calibration[i : i + AGREEMENT_ITEM_SLICES], fp32_logits[i : i + AGREEMENT_ITEM_SLICES] > cut)
                         for i in range(0, len(calibration), AGREEMENT_ITEM_SLICES)])


def _agreement_metric(cut: float) -> Any:
    """NNCF's validation function: (mean Dice, Dice of each item) of a model's masks against fp32's.

    NNCF first calls it on a one-item subset to tell a metric from logits (`Evaluator.determine_mode`) and
    silently takes logits mode if it raises or returns anything but a pair whose second part is numbers; then
    ranking fails later. So it takes any subset and returns (float, list of floats); `dice` scores an item where
    both masks are empty as 1 (agreement), never NaN."""

    def validate(compiled: Any, items: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[float, list[float]]:
        values = [dice(reference, logits_of(compiled, slices) > cut) for slices, reference in items]
        return float(np.mean(values)), values

    return validate


def measure_agreement(reference: Predictor, int8: Predictor, cases: list[ValidationCase],
                      config: EvaluationConfig = EvaluationConfig()) -> Agreement:
    """Segment each held-out case with both predictors; Dice between the masks and each one's scores."""
    rows = []
    for case in cases:
        masks, seconds, scores = {}, {}, {}
        for name, predictor in (("fp32", reference), ("int8", int8)):
            started = time.perf_counter()
            masks[name] = predictor.predict(case.adc, case.z).mask
            seconds[name] = time.perf_counter() - started
            scores[name] = score_row(case.case_id, case.label, masks[name], case.adc.geometry, case.burden, config)
        rows.append(CaseAgreement(
            case.case_id, dice(masks["fp32"], masks["int8"]), int(masks["fp32"].sum()), int(masks["int8"].sum()),
            scores["fp32"].dsc, scores["int8"].dsc, scores["fp32"].masd, scores["int8"].masd,
            scores["fp32"].nsd, scores["int8"].nsd, seconds["fp32"], seconds["int8"]))
        log.info("%s: int8 vs fp32 Dice %.4f (fp32 %d voxels, int8 %d)", case.case_id, rows[-1].dice_int8_vs_fp32,
                 rows[-1].fp32_voxels, rows[-1].int8_voxels)
    return Agreement(rows)


def quantize(checkpoint: Path, data: Path | None, slices: int | None = None, cases: list[Case] | None = None,
             settings: QuantizationConfig = QuantizationConfig()) -> QuantizationResult:
    """Calibrate, write the int8 model beside `checkpoint`, measure its agreement and record it in its stamp."""
    if data is None and cases is None:
        raise InputError(f"{checkpoint}: int8 needs calibration data: give the labelled cases it was trained on "
                         "(--data); random slices prove nothing")
    if slices is not None:
        settings = replace(settings, slices=slices)  # checked there, as every setting
    checkpoint = Path(checkpoint)
    metadata, config = read_header(checkpoint)
    cases = find_any_cases(data) if cases is None else cases
    if not cases:
        raise InputError(f"{data}: no cases to calibrate with")
    require_apart([*Derived.of(checkpoint, INT8).all_paths, *Derived.of(checkpoint, OPENVINO).all_paths],
                  [checkpoint, *(data_inputs(data, cases) if data is not None else [])])
    require_writable(checkpoint.parent)  # the int8 model goes beside the checkpoint: known before calibrating
    unlabelled = [c.case_id for c in cases if c.label is None]
    if unlabelled:
        raise InputError(f"{data}: cases without a label ({', '.join(unlabelled[:5])}): the held-out cases are "
                         "scored against their labels")
    _require_trained_files(checkpoint, metadata, cases)
    read = [read_validation_case(c) for c in cases]
    calibration_cases, held_out, how = split_cases(metadata, read, config.train)

    fp32 = Predictor.load([checkpoint], "cpu", inference=InferenceConfig(engine="openvino", precision="fp32"))
    held_out_ids = {c.case_id for c in held_out}
    if any(c.case_id in held_out_ids for c in calibration_cases):  # split_cases never does; a guard, not a hope
        raise InputError(f"{checkpoint}: a held-out case is in the calibration set")
    calibration = calibration_slices(fp32, ((c.adc.array, c.z.array, c.label) for c in calibration_cases),
                                     settings.slices, lesion_share=settings.lesion_share)
    log.info("calibrating on %d slices of %d training cases (%s)", len(calibration), len(calibration_cases), how)
    paths = write_int8(checkpoint, calibration, {"calibration": {"cases": [c.case_id for c in calibration_cases],
                                                                 "split": how}},
                       settings, threshold=fp32.config.threshold)

    reference = Predictor.load([checkpoint], "cpu", inference=InferenceConfig(engine="torch", precision="fp32"))
    # the int8 model just written, as saved; not through the loader, which warns that no agreement is recorded yet
    runtime = resolve_runtime("cpu", "openvino", "int8")
    int8 = Predictor(fp32.checkpoints, [OpenVINONetwork(paths, runtime)], runtime)
    agreement = measure_agreement(reference, int8, held_out)
    paths.update_stamp({"agreement": {**agreement.summary(), "cases": [asdict(c) for c in agreement.cases]}})
    stamp = paths.stamp()
    return QuantizationResult(paths, stamp["calibration"], agreement, stamp.get("recalibration") or {})


def recorded_agreement(checkpoint: Path) -> dict | None:
    """The agreement recorded in the int8 model's stamp beside `checkpoint` (None without one)."""
    stamp = Derived.of(checkpoint, INT8).stamp()
    return stamp.get("agreement") if stamp else None


def markdown_table(agreement: Agreement) -> str:
    """Each held-out case as a row of a Markdown table (Dice of the int8 mask against fp32's, the voxels of both,
    each one's DSC, MASD and NSD against the label, seconds), then the rule MASD and NSD were computed under."""
    lines = ["| case | Dice int8 vs fp32 | fp32 voxels | int8 voxels | DSC fp32 | DSC int8 | MASD fp32 | MASD int8 "
             "| NSD fp32 | NSD int8 | s fp32 (torch) | s int8 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {c.case_id} | {c.dice_int8_vs_fp32:.4f} | {c.fp32_voxels} | {c.int8_voxels} | {c.dsc_fp32:.4f} "
              f"| {c.dsc_int8:.4f} | {c.masd_fp32:.3f} | {c.masd_int8:.3f} | {c.nsd_fp32:.4f} | {c.nsd_int8:.4f} "
              f"| {c.seconds_fp32:.2f} | {c.seconds_int8:.2f} |" for c in agreement.cases]
    note = f"MASD and NSD: {RULES[0].label} rule (spacing (z, x, y), as the organisers' current script)"
    return "\n".join(lines) + f"\n\n{note}\n"


def describe(result: QuantizationResult) -> str:
    """What a quantization did, as `sparseg quantize` prints it: the calibration, each held-out case's agreement
    (`markdown_table`), their summary and whether the agreement holds."""
    summary = result.agreement.summary()
    agreement, labels = summary["dice_int8_vs_fp32"], summary["against_labels"]
    verdict = "holds" if result.agreement.holds else "does NOT hold"
    recalibration = result.recalibration
    shift = ""
    if "threshold_equivalent" in recalibration:
        shift = (f"int8 logits shifted by {recalibration['logit_offset']:+.2f} (a threshold of "
                 f"{recalibration['threshold_equivalent']:.3f} instead of {recalibration['threshold']:g}): ")
        if "calibration_voxels" in recalibration:
            voxels = recalibration["calibration_voxels"]
            shift += (f"as many lesion voxels on the calibration slices as fp32 ({voxels['fp32']:.0f}; "
                      f"{voxels['int8_before']:.0f} without the shift)\n")
        else:
            dices = recalibration["calibration_dice_vs_fp32"]
            shift += f"Dice with fp32 on the calibration slices {dices['before']:.4f} -> {dices['after']:.4f}\n"
    return (f"calibrated on {result.calibration['slices']} slices of {len(result.calibration['cases'])} training "
            f"cases; {result.calibration['split']}\n" + shift + "\n"
            + markdown_table(result.agreement)
            + f"\n{summary['held_out_cases']} held-out cases: Dice int8 vs fp32 smallest {agreement['smallest']:.4f}, "
            f"median {agreement['median']:.4f}, {agreement['identical_cases']} identical; against the labels "
            f"DSC {labels['fp32']['dsc']:.4f} fp32, {labels['int8']['dsc']:.4f} int8\n"
            f"agreement {verdict} (every case >= {summary['required']}); wrote {result.paths.files['.xml']}; "
            "use it with --precision int8\n")
