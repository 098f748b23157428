"""The MLflow model registry's lifecycle around the coin mint-year regressor: aliases, the promotion
decision, rollback (plain MLflow client API, no Dagster). Loading and checking a logged model is in
``coin_assets.ml.model_serialization``.

With registered-model aliases only (stages are deprecated in MLflow 3):

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

Promotions and rollbacks move several aliases; MLflow has no transaction over them, so both run
under ``registry_lock`` (a Postgres advisory lock or a file lock, see there) and re-read production
inside it: a promotion decided against a production that has moved since is staged, not promoted.

Notes on MLflow 3 behaviour this module relies on or works around:

- ``ModelVersion.version`` is an ``int`` from the SQL store but a ``str`` over REST: every
  ``ModelVersion`` returned here has its version normalised to ``str``.
- ``search_model_versions`` does not populate aliases; ``get_model_version`` does.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from coin_assets.core.clock import utcnow

if TYPE_CHECKING:  # keep `import coin_assets.ml.registry` cheap: mlflow loads lazily
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

STAGING, PRODUCTION, PREVIOUS_PRODUCTION = "staging", "production", "previous_production"
ROLLED_BACK = "rolled_back"

DECISION_PROMOTED, DECISION_STAGED, DECISION_REJECTED = "promoted", "staged", "rejected"

ROLLBACK_HISTORY_TAG = "rollback_history"
ROLLBACK_HISTORY_KEEP = 20
_MAX_REASON_CHARS = 5000
LOCK_TIMEOUT_SECONDS = 120.0


# ---------------------------------------------------------------------------------------------
# lookup
# ---------------------------------------------------------------------------------------------


def model_version_uri(name: str, version: str | int) -> str:
    """``models:/<name>/<version>``."""
    return f"models:/{name}/{version}"


def _normalise(mv: ModelVersion) -> ModelVersion:
    """The SQL store returns ``version`` as an int, the REST store as a str: always a str here.

    The copy is built with ModelVersion's public constructor from its public properties (its
    ``version`` has no setter); coin_assets_tests/test_private_api_adapters.py checks that every
    property of ModelVersion survives, so a field a new MLflow adds is not dropped unnoticed."""
    if mv is None or isinstance(mv.version, str):
        return mv
    from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

    return ModelVersion(
        name=mv.name, version=str(mv.version), creation_timestamp=mv.creation_timestamp,
        last_updated_timestamp=mv.last_updated_timestamp, description=mv.description, user_id=mv.user_id,
        current_stage=mv.current_stage, source=mv.source, run_id=mv.run_id, status=mv.status,
        status_message=mv.status_message, tags=[ModelVersionTag(k, v) for k, v in mv.tags.items()],
        run_link=mv.run_link, aliases=list(mv.aliases), model_id=mv.model_id, params=mv.params,
        metrics=mv.metrics, deployment_job_state=mv.deployment_job_state, workspace=mv.workspace,
    )


def is_missing_error(err: Exception) -> bool:
    """An MLflow error that means "no such model/version" (not a lookup failure such as a lost connection)."""
    return getattr(err, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"



def get_alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version an alias points at; None when the alias or the registered model is missing.

    (``get_model_version_by_alias`` raises RESOURCE_DOES_NOT_EXIST for a missing model but
    INVALID_PARAMETER_VALUE for a missing alias, so the alias map is read first.)
    """
    from mlflow.exceptions import MlflowException

    try:
        aliases = client.get_registered_model(name).aliases or {}
    except MlflowException as err:
        if is_missing_error(err):
            return None
        raise
    if alias not in aliases:
        return None
    try:
        return _normalise(client.get_model_version(name, str(aliases[alias])))
    except MlflowException as err:
        if is_missing_error(err):
            return None
        raise


def all_versions(client: MlflowClient, name: str) -> list[ModelVersion]:
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
    for mv in all_versions(client, name):
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


def find_version(client: MlflowClient, name: str, training_set_hash: str, config_hash: str) -> ModelVersion | None:
    """The highest version tagged with this training_set_hash and config_hash (a retrain would repeat it)."""
    matches = [
        mv for mv in all_versions(client, name)
        if mv.tags.get("training_set_hash") == training_set_hash and mv.tags.get("config_hash") == config_hash
    ]
    return matches[-1] if matches else None


# ---------------------------------------------------------------------------------------------
# the lock around alias moves
# ---------------------------------------------------------------------------------------------


def _postgres_dsn(url: str) -> str:
    """A SQLAlchemy-style URL (postgresql+psycopg2://...) as a libpq one."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgresql") else url


def _advisory_key(name: str) -> int:
    """A signed 64-bit key for pg_advisory_lock, stable across processes (unlike hash())."""
    return int.from_bytes(hashlib.sha256(f"coin_assets.registry:{name}".encode()).digest()[:8], "big", signed=True)


def lock_target(client: MlflowClient, lock_url: str | None = None) -> str:
    """Where the registry lock lives: `lock_url` when given (a postgresql:// URL or a file path);
    otherwise a Postgres registry's own database, a file beside an SQLite registry, or, for a tracking
    server without lock_url, a file in this machine's temp folder (which orders the promotions of
    one machine only: give a scale-out deployment COIN_ASSETS_REGISTRY_LOCK).

    The registry is the client's tracking URI: every client coin_assets builds passes
    ``registry_uri=tracking_uri`` (MlflowRegistry.client, serving, the launcher), and MLflow's default
    registry for a tracking URI is that URI (MlflowClient has no public registry-URI property)."""
    if lock_url:
        return lock_url
    uri = client.tracking_uri or ""
    if uri.startswith("postgresql"):
        return uri
    if uri.startswith("sqlite:///"):
        return uri.removeprefix("sqlite:///") + ".lock"
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return str(Path(tempfile.gettempdir()) / f"coin_assets_registry_{digest}.lock")


@contextmanager
def registry_lock(client: MlflowClient, name: str, lock_url: str | None = None,
                  timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold the lock that orders alias moves (promotion, rollback) of registered model `name`.

    A Postgres session advisory lock or an OS file lock (filelock): both are released by the
    operating system or the server when the holder dies, so a crash never leaves it taken.
    Raises TimeoutError after `timeout` seconds of waiting.
    """
    target = lock_target(client, lock_url)
    if target.startswith("postgresql"):
        import psycopg2

        conn = psycopg2.connect(_postgres_dsn(target))
        conn.autocommit = True
        try:
            key = _advisory_key(name)
            deadline = time.monotonic() + timeout
            with conn.cursor() as cur:
                while True:
                    cur.execute("SELECT pg_try_advisory_lock(%s)", [key])
                    if cur.fetchone()[0]:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"registry lock of {name!r} not acquired in {timeout:.0f}s")
                    time.sleep(0.1)
            try:
                yield
            finally:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s)", [key])
        finally:
            conn.close()
    else:
        from filelock import FileLock, Timeout

        path = Path(target.removeprefix("file://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with FileLock(str(path), timeout=timeout):
                yield
        except Timeout as err:
            raise TimeoutError(f"registry lock of {name!r} ({path}) not acquired in {timeout:.0f}s") from err


# ---------------------------------------------------------------------------------------------
# promotion
# ---------------------------------------------------------------------------------------------


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
    reading_floors: dict[str, float] | None = None,
    reading_tolerance: float = 0.05,
    production_is_base: bool = False,
) -> PromotionDecision:
    """Pure function. Insane → not staged, not promoted (reason lists the problems). No production →
    promote the first sane model. Otherwise promote only if candidate mae < production mae -
    min_mae_improvement (mae key 'mae'); else staged but rejected with a reason stating both MAEs and
    the margin. A production that is the base version (the committed reader, no whole-coin model:
    ``production_is_base``) is replaced by the first sane candidate that reads as well as it.

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
    forgot = reading_regressions(candidate_metrics, reading_floors or {}, reading_tolerance)
    if forgot:
        return make(False, True, f"staged, not promoted: v{candidate_version} reads worse than "
                                 + "; ".join(forgot) + f" (tolerance {reading_tolerance:.0%})")
    if production_version is None:
        return make(True, True, f"promoted: v{candidate_version} is the first sane model "
                                f"(no production version yet), test MAE {candidate_mae:.3f}")
    if production_is_base:
        return make(True, True, f"promoted: v{candidate_version} is the first trained model and reads as well as "
                                f"production v{production_version}, the base version; test MAE {candidate_mae:.3f}")
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


def reading_regressions(candidate_metrics: dict, floors: dict[str, float], tolerance: float) -> list[str]:
    """Pure. For each reference (e.g. ``production v3``, ``the pre-trained reader``) whose reading suite score
    is in ``floors``: a line when the candidate's ``reading_exact`` is below it by more than ``tolerance``
    (a candidate without a reading score counts as 0)."""
    value = candidate_metrics.get("reading_exact")
    try:
        exact = float(value)
    except (TypeError, ValueError):
        exact = 0.0
    exact = exact if math.isfinite(exact) else 0.0
    return [f"{who} on the reading suite: {exact:.1%} exact vs {floor:.1%}"
            for who, floor in floors.items() if floor is not None and math.isfinite(floor) and exact < floor - tolerance]


def _set_tags(client: MlflowClient, name: str, version: str, tags: dict) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


def apply_decision(client: MlflowClient, name: str, decision: PromotionDecision,
                   lock_url: str | None = None) -> PromotionDecision:
    """Write aliases and tags: sane → alias staging; promote → previous_production := old production (if
    any), production := candidate; tags on the candidate version (decision, decision_reason, test_mae,
    test_<metric>, decided_at, compared_with, promoted_at and replaced_version when promoted).

    Runs under ``registry_lock`` and re-reads production inside it (compare-and-set): when production
    is no longer the version the candidate was compared with (another promotion or a rollback came
    first), the candidate is staged, not promoted, with that reason. Returns the decision applied.
    Re-promoting the current production leaves previous_production alone.
    """
    candidate = str(decision.candidate_version)
    with registry_lock(client, name, lock_url):
        current = get_alias_version(client, name, PRODUCTION) if decision.promote else None
        if current is not None and current.version not in (candidate, decision.production_version):
            decision = replace(decision, promote=False, staged=True, reason=(
                f"staged, not promoted: production moved from v{decision.production_version or ' none'} to "
                f"v{current.version} after v{candidate} was compared with it; evaluate again. "
                f"(was: {decision.reason})"))
        now = utcnow().isoformat(timespec="milliseconds")
        tags = {
            "decision": decision.decision,
            "decision_reason": decision.reason[:_MAX_REASON_CHARS],
            "decided_at": now,
            "compared_with": decision.production_version or "none",
            "test_mae": repr(float(decision.candidate_metrics["mae"]))
            if _is_number(decision.candidate_metrics.get("mae")) else "nan",
        }
        for key, value in decision.candidate_metrics.items():
            if key != "mae" and _is_number(value):
                tags[f"test_{key}"] = repr(float(value))
        replaced = current is not None and current.version != candidate
        if decision.promote:
            tags["promoted_at"] = now
            if replaced:
                tags["replaced_version"] = current.version
        _set_tags(client, name, candidate, tags)

        if decision.staged or decision.promote:
            client.set_registered_model_alias(name, STAGING, candidate)
        if decision.promote:
            if replaced:
                client.set_registered_model_alias(name, PREVIOUS_PRODUCTION, current.version)
                _set_tags(client, name, current.version, {"superseded_by": candidate, "superseded_at": now})
            client.set_registered_model_alias(name, PRODUCTION, candidate)
    return decision


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
        if is_missing_error(err):
            return None
        raise


def _promoted_below(client: MlflowClient, name: str, version: str) -> ModelVersion | None:
    """The highest version below `version` tagged decision=promoted and not rolled back from."""
    below = [mv for mv in promoted_versions(client, name) if int(mv.version) < int(version)]
    return below[-1] if below else None


def rollback(client: MlflowClient, name: str, actor: str, reason: str, to_version: str | None = None,
             lock_url: str | None = None) -> RollbackResult:
    """Point production back at `to_version` or, by default, at the previous_production alias (falling
    back to the highest version below the current one tagged decision=promoted and not itself rolled
    back from). Records who/why/when as tags; the version rolled back from stays findable (tags
    rolled_back_by/rollback_reason/rolled_back_at/rolled_back_to + alias `rolled_back`). Raises a clear
    ValueError when there is nothing to roll back to.

    Afterwards previous_production points at what the restored version replaced when it was promoted
    (tag replaced_version) or else the next older promoted version, or is removed: a second rollback
    keeps going back and never rolls forward onto the version just rolled back from.

    Runs under ``registry_lock``, like a promotion, so the two never interleave.
    """
    actor, reason = (actor or "").strip(), (reason or "").strip()
    if not actor or not reason:
        raise ValueError("a rollback needs an actor (who) and a reason (why)")
    with registry_lock(client, name, lock_url):
        return _rollback_locked(client, name, actor, reason, to_version)


def _rollback_locked(client: MlflowClient, name: str, actor: str, reason: str, to_version: str | None) -> RollbackResult:
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

    now = utcnow().isoformat(timespec="milliseconds")
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
