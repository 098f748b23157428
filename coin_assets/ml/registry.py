"""The MLflow model registry around the coin mint-year regressor (plain MLflow client API, no Dagster).

Lifecycle, with registered-model aliases only (stages are deprecated in MLflow 3):

- every trained model is logged with ``mlflow.pytorch.log_model`` (signature + input example) and
  registered as a new version;
- ``staging``  -> the last candidate that passed the sanity check;
- ``production`` -> what serves predictions;
- ``previous_production`` -> what production pointed at before the last promotion (rollback target);
- ``rolled_back`` -> the version production was last rolled back from.

Every decision is written as model-version tags, which are the source of truth:
``decision`` ("promoted" | "staged" | "rejected"), ``decision_reason``, ``test_mae`` (and the other
test metrics as ``test_<name>``), ``decided_at``, ``promoted_at``; a rollback writes ``rolled_back_by``,
``rollback_reason``, ``rolled_back_at``, ``rolled_back_to`` on the version rolled back from and
``restored_by_rollback``="true", ``restored_by``, ``restored_at``, ``restored_from`` on the restored one.
A short ``rollback_history`` (JSON) registered-model tag is kept as a convenience.

Notes on MLflow 3 behaviour this module relies on or works around:

- ``mlflow.pytorch.log_model`` defaults to ``serialization_format="pt2"`` (``torch.export``) outside
  Databricks; "pickle" logs the eager module (and warns about pickle; loading it is allowed unless
  ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``). ``log_coin_model`` keeps MLflow's default and lets the
  caller choose. ``torch.export`` specialises a size-1 dimension to a constant, so a batch-1 input
  example would give a model that only accepts batch 1: the example is repeated to a batch of 2 before
  logging (the exported model then accepts any batch size, 1 included).
- ``mlflow.pytorch.load_model`` of a pt2 model returns a ``torch.fx.GraphModule`` frozen in eval mode
  whose ``.eval()``/``.train()`` raise ``NotImplementedError``: ``load_torch_model`` wraps it so code
  written for eager modules (``model.to(dev).eval()``) works.
- ``ModelVersion.version`` is an ``int`` from the SQL store but a ``str`` over REST: every
  ``ModelVersion`` returned here has its version normalised to ``str``.
- ``search_model_versions`` does not populate aliases; ``get_model_version`` does.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # keep `import coin_assets.ml.registry` cheap: mlflow and torch load lazily
    import torch
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models.model import ModelInfo

STAGING, PRODUCTION, PREVIOUS_PRODUCTION = "staging", "production", "previous_production"
ROLLED_BACK = "rolled_back"

DECISION_PROMOTED, DECISION_STAGED, DECISION_REJECTED = "promoted", "staged", "rejected"

ARTIFACT_NAME = "model"
ROLLBACK_HISTORY_TAG = "rollback_history"
ROLLBACK_HISTORY_KEEP = 20
_MAX_REASON_CHARS = 5000


# ---------------------------------------------------------------------------------------------
# logging and lookup
# ---------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _as_input_array(input_example) -> np.ndarray:
    array = np.ascontiguousarray(np.asarray(input_example, dtype=np.float32))
    if array.ndim != 5 or array.shape[1:3] != (2, 3) or array.shape[0] < 1:
        raise ValueError(f"input_example must be a float32 array [B, 2, 3, H, W] with B >= 1, got shape {array.shape}")
    return array


def log_coin_model(
    model: torch.nn.Module,
    input_example: np.ndarray,
    registered_model_name: str | None = None,
    *,
    serialization_format: str = "pt2",
) -> ModelInfo:
    """Inside an active MLflow run: log the model with signature (inferred from input_example and the
    model's output) and input example; register it as a new version when registered_model_name is given.
    Returns ModelInfo (its .registered_model_version, .model_uri).

    The logged model is an eval-mode CPU copy (the caller's model is left untouched), exported with
    ``torch.export`` by default ("pt2": self-contained, loads back as an eval-mode GraphModule, see
    load_torch_model) or pickled ("pickle": loads back as the eager module; needs this package
    importable where it is loaded). A batch-1 example is repeated to batch 2 so an exported batch
    dimension stays dynamic. Pip requirements are given explicitly (torch, cloudpickle, mlflow) instead
    of being inferred, which would cost a subprocess (~5 s) per logged model.
    """
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    if mlflow.active_run() is None:
        raise RuntimeError("log_coin_model must be called inside an active MLflow run (mlflow.start_run())")
    example = _as_input_array(input_example)
    if example.shape[0] == 1:
        example = np.concatenate([example, example], axis=0)

    export = copy.deepcopy(model).to("cpu").eval()
    with torch.no_grad():
        output = export(torch.from_numpy(example))
    output = np.asarray(output.detach().cpu().numpy(), dtype=np.float32)
    if output.shape != (example.shape[0], 2):
        raise ValueError(f"the model must return [B, 2] (year, sigma); got {tuple(output.shape)} for input {example.shape}")
    signature = infer_signature(example, output)

    return mlflow.pytorch.log_model(
        export,
        name=ARTIFACT_NAME,
        signature=signature,
        input_example=example,
        registered_model_name=registered_model_name,
        pip_requirements=mlflow.pytorch.get_default_pip_requirements(),
        serialization_format=serialization_format,
    )


def load_torch_model(model_uri: str) -> torch.nn.Module:
    """``mlflow.pytorch.load_model`` on CPU, returned as a module that code written for eager models can use.

    A pt2 (``torch.export``) model loads as a GraphModule frozen in eval mode whose ``.eval()`` and
    ``.train()`` raise NotImplementedError; it is wrapped so that ``.eval()``/``.train(mode)`` are no-ops
    (the graph always runs as exported: in eval mode) and ``.to(device)`` still moves the weights.
    A pickled eager model is returned as loaded (in eval mode).
    """
    import mlflow.pytorch
    from mlflow.models import get_model_info

    if "pytorch" not in get_model_info(model_uri).flavors:  # a raw-photo pyfunc: its packaged torch module
        from coin_assets.ml.pyfunc import load_photo_predictor

        return load_photo_predictor(model_uri).module
    model = mlflow.pytorch.load_model(model_uri, map_location="cpu")
    if "train" in vars(model) or "eval" in vars(model):  # ExportedProgram.module() patches these per instance
        return _exported_module_class()(model)
    return model.eval()


@functools.cache
def _exported_module_class():
    import torch

    class ExportedCoinModel(torch.nn.Module):
        """An exported (eval-mode) coin model behind an nn.Module whose train()/eval() do not raise."""

        def __init__(self, exported: torch.nn.Module):
            super().__init__()
            self.exported = exported
            self.training = False

        def forward(self, pairs):
            return self.exported(pairs)

        def train(self, mode: bool = True):
            self.training = bool(mode)  # the exported graph is fixed in eval mode either way
            return self

    return ExportedCoinModel


def model_version_uri(name: str, version: str | int) -> str:
    """``models:/<name>/<version>``."""
    return f"models:/{name}/{version}"


def _normalise(mv: ModelVersion) -> ModelVersion:
    """The SQL store returns ``version`` as an int, the REST store as a str: always a str here."""
    if mv is not None and not isinstance(mv.version, str):
        mv._version = str(mv.version)
    return mv


def is_missing_error(err: Exception) -> bool:
    """An MLflow error that means "no such model/version" (not a lookup failure such as a lost connection)."""
    return getattr(err, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"


_missing = is_missing_error


def get_alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version an alias points at; None when the alias or the registered model is missing.

    (``get_model_version_by_alias`` raises RESOURCE_DOES_NOT_EXIST for a missing model but
    INVALID_PARAMETER_VALUE for a missing alias, so the alias map is read first.)
    """
    from mlflow.exceptions import MlflowException

    try:
        aliases = client.get_registered_model(name).aliases or {}
    except MlflowException as err:
        if _missing(err):
            return None
        raise
    if alias not in aliases:
        return None
    try:
        return _normalise(client.get_model_version(name, str(aliases[alias])))
    except MlflowException as err:
        if _missing(err):
            return None
        raise


def _all_versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    """Every version of a registered model (paged), ordered by version number; [] when it is missing."""
    quoted = name.replace("'", "\\'")
    versions, token = [], None
    while True:
        page = client.search_model_versions(f"name = '{quoted}'", page_token=token)
        versions.extend(_normalise(mv) for mv in page)
        token = page.token
        if not token:
            break
    return sorted(versions, key=lambda mv: int(mv.version))


def promoted_versions(client: MlflowClient, name: str, include_rolled_back: bool = False) -> list[ModelVersion]:
    """Versions tagged decision=promoted, ordered by version number.

    A version production was rolled back from (tag ``rolled_back_by``) is left out unless
    include_rolled_back, or unless it was restored again later (``restored_by_rollback``): it was
    promoted, but it is no longer a model anyone should compare production with.
    """
    out = []
    for mv in _all_versions(client, name):
        if mv.tags.get("decision") != DECISION_PROMOTED:
            continue
        if not include_rolled_back and _is_rolled_back(mv):
            continue
        out.append(mv)
    return out


def _is_rolled_back(mv: ModelVersion) -> bool:
    """Rolled back from, and not restored since."""
    rolled_at = mv.tags.get("rolled_back_at")
    if not rolled_at:
        return False
    restored_at = mv.tags.get("restored_at")
    return not (mv.tags.get("restored_by_rollback") == "true" and restored_at and restored_at > rolled_at)


def latest_rollback(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version most recently restored by a rollback (tag restored_by_rollback="true"), if any."""
    restored = [mv for mv in _all_versions(client, name) if mv.tags.get("restored_by_rollback") == "true"]
    if not restored:
        return None
    return max(restored, key=lambda mv: (mv.tags.get("restored_at", ""), int(mv.version)))


def find_version(client: MlflowClient, name: str, training_set_hash: str, config_hash: str) -> ModelVersion | None:
    """The highest version tagged with this training_set_hash and config_hash (a retrain would repeat it)."""
    matches = [
        mv for mv in _all_versions(client, name)
        if mv.tags.get("training_set_hash") == training_set_hash and mv.tags.get("config_hash") == config_hash
    ]
    return matches[-1] if matches else None


# ---------------------------------------------------------------------------------------------
# sanity check and promotion
# ---------------------------------------------------------------------------------------------


def _photo_model_problems(loaded, year_range: tuple[int, int]) -> list[str]:
    """Smoke-predict a raw-photo pyfunc on its own logged input example (real photos)."""
    example = loaded.input_example
    if example is None:
        return ["the logged raw-photo model has no input example"]
    try:
        output = loaded.predict(example)
    except Exception as err:  # noqa: BLE001
        return [f"smoke prediction failed: {type(err).__name__}: {str(err)[:500]}"]
    problems = []
    for column in ("year", "sigma", "lower_90", "upper_90"):
        if column not in output:
            problems.append(f"output has no {column!r} column")
    if problems:
        return problems
    if output["error"].astype(str).str.len().gt(0).any():
        problems.append(f"the input example was not scored: {output['error'].iloc[0]}")
    years, sigmas = output["year"].to_numpy(float), output["sigma"].to_numpy(float)
    if not (np.isfinite(years).all() and np.isfinite(sigmas).all()):
        problems.append("non-finite year or sigma")
    elif (sigmas <= 0).any():
        problems.append("sigma <= 0")
    elif ((years < year_range[0]) | (years > year_range[1])).any():
        problems.append(f"year outside {year_range}: {years.tolist()}")
    return problems


def sanity_check(model_uri: str, input_example: np.ndarray, year_range: tuple[int, int] = (1500, 2100)) -> list[str]:
    """Load through mlflow.pyfunc, check it has a signature, smoke-predict input_example: outputs finite,
    shape [B,2], sigma>0, years within year_range. Returns a list of problems (empty = sane)."""
    import mlflow.pyfunc

    try:
        example = _as_input_array(input_example)
    except ValueError as err:
        return [f"bad smoke input: {err}"]
    try:
        loaded = mlflow.pyfunc.load_model(model_uri)
    except Exception as err:  # noqa: BLE001 - any failure to load is a problem to report
        return [f"cannot load {model_uri} through mlflow.pyfunc: {type(err).__name__}: {err}"]

    problems = []
    signature = loaded.metadata.signature
    if signature is not None and signature.inputs is not None and {"front", "back"} <= set(signature.inputs.input_names()):
        return _photo_model_problems(loaded, year_range)
    if signature is None or signature.inputs is None:
        problems.append("the logged model has no signature")
    elif signature.inputs.is_tensor_spec():
        spec = signature.inputs.inputs[0].shape
        if len(spec) != example.ndim or any(s not in (-1, e) for s, e in zip(spec, example.shape, strict=False)):
            problems.append(f"signature input shape {tuple(spec)} does not accept the smoke input {example.shape}")
    try:
        output = np.asarray(loaded.predict(example), dtype=np.float64)
    except Exception as err:  # noqa: BLE001
        problems.append(f"smoke prediction failed: {type(err).__name__}: {str(err)[:500]}")
        return problems

    batch = example.shape[0]
    if output.shape != (batch, 2):
        problems.append(f"output shape {output.shape}, expected ({batch}, 2) = (year, sigma)")
        return problems
    finite = np.isfinite(output)
    if not finite.all():
        problems.append(f"non-finite outputs: {int((~finite).sum())} of {output.size} values are NaN or inf")
    years, sigmas = output[:, 0], output[:, 1]
    low, high = year_range
    bad_years = finite[:, 0] & ((years < low) | (years > high))
    if bad_years.any():
        problems.append(f"predicted years {np.round(years[bad_years], 1).tolist()} outside {low}-{high}")
    bad_sigmas = finite[:, 1] & (sigmas <= 0)
    if bad_sigmas.any():
        problems.append(f"non-positive sigma {np.round(sigmas[bad_sigmas], 4).tolist()}")
    return problems


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    staged: bool
    reason: str
    candidate_version: str
    production_version: str | None
    candidate_metrics: dict
    production_metrics: dict | None

    @property
    def decision(self) -> str:
        """The ``decision`` tag: promoted, staged (sane, not better) or rejected (failed sanity)."""
        if self.promote:
            return DECISION_PROMOTED
        return DECISION_STAGED if self.staged else DECISION_REJECTED


def _mae(metrics: dict | None) -> float | None:
    """The finite 'mae' of a metrics dict, else None."""
    if not metrics or metrics.get("mae") is None:
        return None
    try:
        value = float(metrics["mae"])
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def decide_promotion(
    candidate_version: str,
    candidate_metrics: dict,
    production_version: str | None,
    production_metrics: dict | None,
    sanity_problems: list[str],
    min_mae_improvement: float = 0.0,
) -> PromotionDecision:
    """Pure function. Insane → not staged, not promoted (reason lists the problems). No production →
    promote the first sane model. Otherwise promote only if candidate mae < production mae -
    min_mae_improvement (mae key 'mae'); else staged but rejected with a reason stating both MAEs and
    the margin.

    A candidate without a finite 'mae' counts as insane; a production without a finite 'mae' is replaced
    by any sane candidate that has one.
    """
    candidate_version = str(candidate_version)
    production_version = None if production_version is None else str(production_version)
    candidate_metrics = dict(candidate_metrics or {})
    production_metrics = None if production_metrics is None else dict(production_metrics)
    margin = float(min_mae_improvement)

    def make(promote: bool, staged: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(promote, staged, reason, candidate_version, production_version,
                                 candidate_metrics, production_metrics)

    problems = list(sanity_problems or [])
    candidate_mae = _mae(candidate_metrics)
    if candidate_mae is None:
        problems.append(f"test MAE is missing or not finite ({candidate_metrics.get('mae')!r})")
    if problems:
        return make(False, False, f"rejected: v{candidate_version} failed the sanity check: " + "; ".join(problems))
    if production_version is None:
        return make(True, True, f"promoted: v{candidate_version} is the first sane model "
                                f"(no production version yet), test MAE {candidate_mae:.3f}")
    production_mae = _mae(production_metrics)
    if production_mae is None:
        return make(True, True, f"promoted: production v{production_version} has no finite test MAE; "
                                f"v{candidate_version} test MAE {candidate_mae:.3f}")
    if candidate_mae < production_mae - margin:
        return make(True, True, f"promoted: v{candidate_version} test MAE {candidate_mae:.3f} < production "
                                f"v{production_version} test MAE {production_mae:.3f} - margin {margin:.3f}")
    return make(False, True, f"staged, not promoted: v{candidate_version} test MAE {candidate_mae:.3f} is not "
                             f"below production v{production_version} test MAE {production_mae:.3f} - margin "
                             f"{margin:.3f} = {production_mae - margin:.3f}")


def _set_tags(client: MlflowClient, name: str, version: str, tags: dict) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


def apply_decision(client: MlflowClient, name: str, decision: PromotionDecision) -> None:
    """Write aliases and tags: sane → alias staging; promote → previous_production := old production (if
    any), production := candidate; tags on the candidate version (decision, decision_reason, test_mae,
    test_<metric>, decided_at, compared_with, promoted_at and replaced_version when promoted).

    The old production is read from the registry at this moment (not from the decision), so a rollback
    between evaluation and decision is not lost. Re-promoting the current production leaves
    previous_production alone.
    """
    candidate = str(decision.candidate_version)
    now = _now()
    tags = {
        "decision": decision.decision,
        "decision_reason": decision.reason[:_MAX_REASON_CHARS],
        "decided_at": now,
        "compared_with": decision.production_version or "none",
        "test_mae": repr(float(decision.candidate_metrics["mae"])) if _is_number(decision.candidate_metrics.get("mae"))
        else "nan",
    }
    for key, value in decision.candidate_metrics.items():
        if key != "mae" and _is_number(value):
            tags[f"test_{key}"] = repr(float(value))
    if decision.promote:
        tags["promoted_at"] = now
        current = get_alias_version(client, name, PRODUCTION)
        if current is not None and current.version != candidate:
            tags["replaced_version"] = current.version
    _set_tags(client, name, candidate, tags)

    if decision.staged or decision.promote:
        client.set_registered_model_alias(name, STAGING, candidate)
    if decision.promote:
        if current is not None and current.version != candidate:
            client.set_registered_model_alias(name, PREVIOUS_PRODUCTION, current.version)
            _set_tags(client, name, current.version, {"superseded_by": candidate, "superseded_at": now})
        client.set_registered_model_alias(name, PRODUCTION, candidate)


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------
# rollback
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RollbackResult:
    from_version: str
    to_version: str
    actor: str
    reason: str


def _get_version(client: MlflowClient, name: str, version: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return _normalise(client.get_model_version(name, str(version)))
    except MlflowException as err:
        if _missing(err):
            return None
        raise


def _promoted_below(client: MlflowClient, name: str, version: str) -> ModelVersion | None:
    """The highest version below `version` tagged decision=promoted and not rolled back from."""
    below = [mv for mv in promoted_versions(client, name) if int(mv.version) < int(version)]
    return below[-1] if below else None


def rollback(client: MlflowClient, name: str, actor: str, reason: str, to_version: str | None = None) -> RollbackResult:
    """Point production back at `to_version` or, by default, at the previous_production alias (falling
    back to the highest version below the current one tagged decision=promoted and not itself rolled
    back from). Records who/why/when as tags; the version rolled back from stays findable (tags
    rolled_back_by/rollback_reason/rolled_back_at/rolled_back_to + alias `rolled_back`). Raises a clear
    ValueError when there is nothing to roll back to.

    Afterwards previous_production points at what the restored version replaced when it was promoted
    (tag replaced_version) or else the next older promoted version, or is removed: a second rollback
    keeps going back and never rolls forward onto the version just rolled back from.
    """
    actor, reason = (actor or "").strip(), (reason or "").strip()
    if not actor or not reason:
        raise ValueError("a rollback needs an actor (who) and a reason (why)")
    current = get_alias_version(client, name, PRODUCTION)
    if current is None:
        raise ValueError(f"model {name!r} has no '{PRODUCTION}' alias: nothing to roll back")

    if to_version is not None:
        target = _get_version(client, name, str(to_version))
        if target is None:
            raise ValueError(f"cannot roll back {name!r} to v{to_version}: no such version")
        if target.version == current.version:
            raise ValueError(f"v{target.version} of {name!r} is already production: nothing to roll back")
        if target.tags.get("decision") == DECISION_REJECTED:
            raise ValueError(f"cannot roll back {name!r} to v{target.version}: it failed the sanity check "
                             f"({target.tags.get('decision_reason', 'rejected')})")
    else:
        target = get_alias_version(client, name, PREVIOUS_PRODUCTION)
        if target is None or target.version == current.version:
            target = _promoted_below(client, name, current.version)
        if target is None:
            raise ValueError(
                f"nothing to roll back to: production of {name!r} is v{current.version}, there is no "
                f"'{PREVIOUS_PRODUCTION}' alias and no earlier promoted version (pass to_version to choose one)"
            )

    now = _now()
    from_version, to = current.version, target.version
    _set_tags(client, name, from_version, {
        "rolled_back_by": actor, "rollback_reason": reason[:_MAX_REASON_CHARS], "rolled_back_at": now,
        "rolled_back_to": to,
    })
    _set_tags(client, name, to, {
        "restored_by_rollback": "true", "restored_by": actor, "restored_at": now, "restored_from": from_version,
        "restore_reason": reason[:_MAX_REASON_CHARS],
    })
    client.set_registered_model_alias(name, PRODUCTION, to)
    client.set_registered_model_alias(name, ROLLED_BACK, from_version)

    # previous_production: what the restored version replaced, else the next older promoted version
    restored = _get_version(client, name, to)
    previous = None
    replaced = restored.tags.get("replaced_version") if restored is not None else None
    if replaced:
        candidate = _get_version(client, name, replaced)
        if candidate is not None and candidate.version not in (to, from_version) and not _is_rolled_back(candidate):
            previous = candidate
    if previous is None:
        previous = _promoted_below(client, name, to)
    if previous is not None and previous.version not in (to, from_version):
        client.set_registered_model_alias(name, PREVIOUS_PRODUCTION, previous.version)
    else:
        client.delete_registered_model_alias(name, PREVIOUS_PRODUCTION)

    _append_rollback_history(client, name, {"from": from_version, "to": to, "actor": actor, "reason": reason[:500],
                                            "at": now})
    return RollbackResult(from_version=from_version, to_version=to, actor=actor, reason=reason)


def _append_rollback_history(client: MlflowClient, name: str, entry: dict) -> None:
    """A convenience copy of the last rollbacks on the registered model (version tags stay the truth)."""
    try:
        history = json.loads(client.get_registered_model(name).tags.get(ROLLBACK_HISTORY_TAG, "[]"))
        if not isinstance(history, list):
            history = []
    except (ValueError, TypeError):
        history = []
    history = (history + [entry])[-ROLLBACK_HISTORY_KEEP:]
    client.set_registered_model_tag(name, ROLLBACK_HISTORY_TAG, json.dumps(history))
