"""``obliviate evaluate``: evaluate a run, optionally against a retrained reference run.

An unlearning run's evaluation is recorded beside its metrics, never over them: each one is
appended to the ``evaluations`` list of its ``run.json`` with the reference it was measured against
(the reference's path and the SHA-256 of its ``model.safetensors``). A reference that is the run
itself (the same directory or the same model file) or the original model the run was unlearned
from is refused: against either, the gaps to the "oracle" are zero or meaningless.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import print_metrics


def add_parser(sub: Any) -> None:
    """Register the ``evaluate`` command."""
    e = sub.add_parser("evaluate", help="evaluate a run, optionally against a retrained reference run")
    e.add_argument("run_dir", help="run directory to evaluate")
    e.add_argument("--reference", default=None, help="run directory of the retrained (oracle) model")
    e.add_argument("--scenario", default=None, help="scenario for a run without scenario.json (e.g. a trained model)")
    e.add_argument("--device", default="auto")


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or a.samefile(b)
    except OSError:
        return False


def _check_reference(source: Any, ref_dir: Any, flag: str) -> tuple[str, str | None]:
    """Refuse a reference that is the evaluated run or the model it came from; returns (its digest, the run's).

    Raises:
        InvalidConfigError: the reference is the run itself (same directory or same model file), or
            the original model the run was unlearned from (its recorded parent directory or digest).
    """
    from ..errors import InvalidConfigError
    from ..io import MODEL_FILE
    from ..runs import file_sha256

    fix = "pass the retrained oracle instead: obliviate unlearn TRAINED_RUN --scenario SPEC --method retrain --out ORACLE"
    where = f"{flag} {str(ref_dir.path)!r}"
    if _same_dir(source.path, ref_dir.path):
        raise InvalidConfigError(f"{where} is the evaluated run itself, so every gap to it would be 0; {fix}.")
    record = source.record
    ref_digest = file_sha256(ref_dir.path / MODEL_FILE) if (ref_dir.path / MODEL_FILE).is_file() else ""
    run_digest = file_sha256(source.path / MODEL_FILE) if (source.path / MODEL_FILE).is_file() else None
    if ref_digest and ref_digest == run_digest:
        raise InvalidConfigError(
            f"{where} holds the same model as the evaluated run (model.safetensors SHA-256 {ref_digest[:12]}), "
            f"so every gap to it would be 0; {fix}."
        )
    parent = record.get("parent")
    parent_digest = record.get("parent_model_sha256")
    if parent_digest is None and parent and (Path(parent) / MODEL_FILE).is_file():
        parent_digest = file_sha256(Path(parent) / MODEL_FILE)
    if (parent and _same_dir(Path(parent), ref_dir.path)) or (ref_digest and ref_digest == parent_digest):
        raise InvalidConfigError(
            f"{where} is the original model the evaluated run was unlearned from (model.safetensors SHA-256 "
            f"{ref_digest[:12]}), not a model retrained without the forget set; {fix}."
        )
    return ref_digest, run_digest


def run(args: argparse.Namespace) -> int:
    """Evaluate; an unlearning run's record gets the evaluation appended (its own metrics stay as written)."""
    import datetime

    from .._utils import versions
    from ..errors import InvalidConfigError, MissingDataError
    from ..evaluation import evaluate
    from ..io import SCENARIO_FILE
    from ..runs import Run, RunDir

    source = RunDir(args.run_dir)
    record = source.record  # checked against the run-record schema before anything else
    ref_dir = RunDir(args.reference) if args.reference else None
    ref_record: dict[str, Any] = {}
    ref_digest: str | None = None
    if ref_dir is not None:
        ref_record = ref_dir.record
        ref_digest, _ = _check_reference(source, ref_dir, "--reference")
    run_ = source.load()
    ds = run_.dataset
    own = source.has_scenario
    if own:
        sc = source.scenario()
    elif args.scenario is None:
        raise MissingDataError(f"{args.run_dir!r} has no {SCENARIO_FILE}; pass --scenario (e.g. class:3) to evaluate it on one.")
    else:
        sc = source.make_scenario(args.scenario)
    reference: Run | None = None
    if ref_dir is not None:
        reference = ref_dir.load()
        if reference.dataset.name != ds.name:
            raise InvalidConfigError(f"The reference run is on {reference.dataset.name!r}, the evaluated run on {ds.name!r}.")
        if ref_dir.has_scenario and ref_dir.scenario_hash() != sc.hash:
            raise InvalidConfigError("The reference run was unlearned on another scenario (its scenario hash differs).")
        if reference.training_set is not None and reference.training_set == sc.training_set:
            raise InvalidConfigError(
                f"--reference {args.reference!r} was trained on the forget set too (it is an original model, trained on "
                f"all of scenario {sc.name!r}'s training set), not retrained without it; pass the retrained oracle "
                "(obliviate unlearn TRAINED_RUN --method retrain)."
            )
    ev = evaluate(run_, sc, reference, device=None if args.device == "auto" else args.device)
    metrics = ev.to_dict()
    note = ""
    if own:
        seconds = (record.get("timings") or {}).get("seconds")
        oracle_seconds = (ref_record.get("timings") or {}).get("seconds") if ref_record.get("method") == "retrain" else None
        entry = {
            "evaluated_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "reference": None
            if ref_dir is None
            else {
                "path": str(ref_dir.path.resolve()),
                "model_sha256": ref_digest,
                "method": ref_record.get("method"),
                "kind": ref_record.get("kind"),
                "scenario_hash": ref_dir.scenario_hash(),
            },
            "scenario_hash": sc.hash,
            "metrics": metrics,
            "timings": {
                "seconds": seconds,
                "oracle_seconds": oracle_seconds,
                "speedup": oracle_seconds / seconds if oracle_seconds is not None and seconds else None,
            },
            "versions": versions(),
        }
        index = source.add_evaluation(entry)
        note = f"; recorded as evaluations[{index}] in {source.path / 'run.json'} (its own metrics unchanged)"
    print_metrics(
        metrics,
        f"{record.get('method') or 'trained model'} on {sc.name}" + (" vs reference" if reference is not None else "") + note,
    )
    return 0
