"""The model-registry core: loading and the sanity check (ml.model_serialization), promotion decisions,
aliases, rollback and the lock around them (ml.registry).

Every test that touches MLflow gets its own sqlite store and artifact folder under tmp_path.
"""

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from coin_assets.ml import model_serialization as ser
from coin_assets.ml import registry as reg
from coin_assets_tests.tensor_models import log_coin_model

NAME = "coin_year_test"
SIZE = 16


class TinyCoinModel(torch.nn.Module):
    """[B, 2, 3, H, W] -> [B, 2] = (2000 + year offset, softplus sigma): global average pool + Linear."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.head = torch.nn.Linear(6, 2)

    def forward(self, x):
        pooled = x.mean(dim=(3, 4)).flatten(1)  # [B, 6] (front and back RGB means)
        out = self.head(pooled)
        return torch.stack([2000.0 + out[:, 0], torch.nn.functional.softplus(out[:, 1]) + 1e-3], dim=1)


def nan_model() -> TinyCoinModel:
    model = TinyCoinModel()
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    return model


def example(batch: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 2, 3, SIZE, SIZE)).astype(np.float32)


@pytest.fixture(scope="session")
def empty_store_db(tmp_path_factory) -> Path:
    """An sqlite file with MLflow's schema, made once: running the migrations costs ~1 s per store."""
    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    uri = f"sqlite:///{path}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()
    return path


@pytest.fixture
def store(tmp_path, empty_store_db, monkeypatch):
    """A fresh sqlite tracking + registry store with artifacts under tmp_path. mlflow.set_tracking_uri
    also exports MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI, so the module globals are restored here and
    the environment by monkeypatch (torn down after this fixture)."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    previous_tracking = getattr(tracking_utils, "_tracking_uri", None)
    previous_registry = getattr(registry_utils, "_registry_uri", None)
    shutil.copyfile(empty_store_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = client.create_experiment("coin_year_test", artifact_location=tmp_path.as_uri() + "/artifacts")
    try:
        yield client, experiment_id
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(previous_tracking)
        mlflow.set_registry_uri(previous_registry)


def log_version(experiment_id, model=None, batch: int = 1):
    with mlflow.start_run(experiment_id=experiment_id):
        return log_coin_model(model or TinyCoinModel(), example(batch), registered_model_name=NAME)


def copy_version(client, info) -> str:
    """Another registered version of an already logged model (fast: no export)."""
    return str(client.create_model_version(NAME, info.model_uri, run_id=info.run_id).version)


def promote_flow(client, version: str, mae: float, margin: float = 0.0) -> reg.PromotionDecision:
    production = reg.get_alias_version(client, NAME, reg.PRODUCTION)
    production_metrics = None
    if production is not None:
        production_metrics = {"mae": float(production.tags["test_mae"])}
    decision = reg.decide_promotion(version, {"mae": mae, "rmse": mae * 1.5}, production and production.version,
                                    production_metrics, [], min_mae_improvement=margin)
    reg.apply_decision(client, NAME, decision)
    return decision


# --- logging, lookup ------------------------------------------------------------------------------


def test_log_and_register_creates_versions(store):
    client, experiment_id = store
    first = log_version(experiment_id)  # batch-1 example: must still accept other batch sizes
    second = log_version(experiment_id, TinyCoinModel(seed=1), batch=3)
    assert (str(first.registered_model_version), str(second.registered_model_version)) == ("1", "2")
    assert reg.model_version_uri(NAME, 2) == f"models:/{NAME}/2"
    assert first.signature is not None
    versions = client.search_model_versions(f"name = '{NAME}'")
    assert sorted(int(v.version) for v in versions) == [1, 2]

    loaded = mlflow.pyfunc.load_model(reg.model_version_uri(NAME, 1))
    inputs = loaded.metadata.signature.inputs.inputs[0]
    assert tuple(inputs.shape) == (-1, 2, 3, SIZE, SIZE) and inputs.type == np.dtype("float32")
    for batch in (1, 2, 5):
        out = loaded.predict(example(batch, seed=batch))
        assert out.shape == (batch, 2)
    expected = TinyCoinModel().eval()(torch.from_numpy(example(2, seed=9))).detach().numpy()
    np.testing.assert_allclose(loaded.predict(example(2, seed=9)), expected, rtol=1e-5)


@pytest.mark.parametrize("serialization_format", ["pt2", "pickle"])
def test_load_torch_model_supports_eval_and_to(store, serialization_format):
    _, experiment_id = store
    with mlflow.start_run(experiment_id=experiment_id):
        info = log_coin_model(TinyCoinModel(), example(), NAME, serialization_format=serialization_format)
    assert ser.sanity_check(reg.model_version_uri(NAME, info.registered_model_version), example(1)) == []
    model = ser.load_torch_model(reg.model_version_uri(NAME, info.registered_model_version))
    was_training = model.training
    model.to("cpu").eval()  # what train.predict does; a bare exported GraphModule raises here
    with torch.inference_mode():
        out = model(torch.from_numpy(example(3, seed=4)))
    model.train(was_training)
    expected = TinyCoinModel().eval()(torch.from_numpy(example(3, seed=4))).detach()
    torch.testing.assert_close(out, expected)


def test_log_requires_active_run_and_model_unchanged(store):
    model = TinyCoinModel().train()
    with pytest.raises(RuntimeError, match="active MLflow run"):
        log_coin_model(model, example())
    _, experiment_id = store
    with mlflow.start_run(experiment_id=experiment_id):
        info = log_coin_model(model, example())
        with pytest.raises(ValueError, match=r"\[B, 2, 3, H, W\]"):
            log_coin_model(model, np.zeros((1, 3, SIZE, SIZE), np.float32))
    assert info.registered_model_version is None
    assert model.training  # the caller's model is not switched to eval mode


def test_get_alias_version_missing(store):
    client, experiment_id = store
    assert reg.get_alias_version(client, "no_such_model", reg.PRODUCTION) is None
    log_version(experiment_id)
    assert reg.get_alias_version(client, NAME, reg.PRODUCTION) is None
    client.set_registered_model_alias(NAME, reg.STAGING, "1")
    staged = reg.get_alias_version(client, NAME, reg.STAGING)
    assert staged.version == "1"  # always a str, whatever the store returns


def test_a_lookup_error_is_raised_not_reported_as_missing(monkeypatch):
    """A registry that cannot be reached is an error, never "no such version/alias"."""
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    unreachable = MlflowClient(tracking_uri="http://127.0.0.1:9", registry_uri="http://127.0.0.1:9")
    with pytest.raises(MlflowException) as err:
        reg.get_alias_version(unreachable, NAME, reg.PRODUCTION)
    assert not reg.is_missing_error(err.value)


# --- sanity check ---------------------------------------------------------------------------------


def test_sanity_check_passes_good_model(store):
    _, experiment_id = store
    info = log_version(experiment_id)
    assert ser.sanity_check(reg.model_version_uri(NAME, info.registered_model_version), example(4)) == []


def test_sanity_check_reports_nan_and_range(store):
    _, experiment_id = store
    info = log_version(experiment_id, nan_model())
    problems = ser.sanity_check(reg.model_version_uri(NAME, info.registered_model_version), example(2))
    assert problems == ["non-finite outputs: 4 of 4 values are NaN or inf"]

    good = reg.model_version_uri(NAME, copy_version(store[0], log_version(experiment_id)))
    out_of_range = ser.sanity_check(good, example(2), year_range=(1500, 1600))
    assert len(out_of_range) == 1 and out_of_range[0].startswith("predicted years") and "1500-1600" in out_of_range[0]
    assert ser.sanity_check(f"models:/{NAME}/99", example(1))[0].startswith(f"cannot load models:/{NAME}/99")
    wrong_size = ser.sanity_check(good, np.zeros((1, 2, 3, 8, 8), np.float32))
    assert wrong_size and "does not accept the smoke input" in wrong_size[0]


# --- decide_promotion (pure) ----------------------------------------------------------------------


def test_decide_insane_is_neither_staged_nor_promoted():
    d = reg.decide_promotion("3", {"mae": 1.0}, "2", {"mae": 5.0}, ["non-finite outputs", "no signature"])
    assert (d.promote, d.staged, d.decision) == (False, False, "rejected")
    assert d.reason == "rejected: v3 failed the sanity check: non-finite outputs; no signature"
    assert (d.candidate_version, d.production_version) == ("3", "2")


def test_decide_candidate_without_finite_mae_is_insane():
    d = reg.decide_promotion("3", {"mae": float("nan")}, None, None, [])
    assert (d.promote, d.staged) == (False, False)
    assert d.reason == "rejected: v3 failed the sanity check: test MAE is missing or not finite (nan)"


def test_decide_first_sane_model_promoted():
    d = reg.decide_promotion(1, {"mae": 7.25}, None, None, [])
    assert (d.promote, d.staged, d.decision) == (True, True, "promoted")
    assert d.reason == "promoted: v1 is the first sane model (no production version yet), test MAE 7.250"
    assert d.candidate_version == "1" and d.production_version is None and d.production_metrics is None


def test_decide_better_promoted():
    d = reg.decide_promotion("4", {"mae": 3.0}, 2, {"mae": 3.6}, [], min_mae_improvement=0.5)
    assert (d.promote, d.staged, d.decision) == (True, True, "promoted")
    assert d.reason == "promoted: v4 test MAE 3.000 < production v2 test MAE 3.600 - margin 0.500"
    assert d.production_version == "2"


def test_decide_not_better_by_margin_staged_not_promoted():
    d = reg.decide_promotion("4", {"mae": 3.2}, "2", {"mae": 3.6}, [], min_mae_improvement=0.5)
    assert (d.promote, d.staged, d.decision) == (False, True, "staged")
    assert d.reason == ("staged, not promoted: v4 test MAE 3.200 is not below production v2 test MAE 3.600"
                        " - margin 0.500 = 3.100")
    equal = reg.decide_promotion("4", {"mae": 3.6}, "2", {"mae": 3.6}, [])
    assert (equal.promote, equal.staged) == (False, True)
    assert equal.reason.endswith("test MAE 3.600 - margin 0.000 = 3.600")


def test_decide_production_without_mae_replaced():
    d = reg.decide_promotion("4", {"mae": 3.0}, "2", None, [])
    assert (d.promote, d.staged) == (True, True)
    assert d.reason == "promoted: production v2 has no finite test MAE; v4 test MAE 3.000"


# --- apply_decision, aliases and tags -------------------------------------------------------------


def test_promotion_lifecycle_and_rollback(store):
    client, experiment_id = store
    info = log_version(experiment_id)
    v1 = str(info.registered_model_version)
    assert ser.sanity_check(reg.model_version_uri(NAME, v1), example(2)) == []

    # first sane model: promoted
    first = promote_flow(client, v1, mae=5.0)
    assert first.promote
    assert reg.get_alias_version(client, NAME, reg.PRODUCTION).version == "1"
    assert reg.get_alias_version(client, NAME, reg.STAGING).version == "1"
    assert reg.get_alias_version(client, NAME, reg.PREVIOUS_PRODUCTION) is None
    tags = client.get_model_version(NAME, v1).tags
    assert tags["decision"] == "promoted" and tags["decision_reason"] == first.reason
    assert float(tags["test_mae"]) == 5.0 and float(tags["test_rmse"]) == 7.5 and tags["promoted_at"]

    # worse candidate: staged, rejected for production, production unchanged
    v2 = copy_version(client, info)
    worse = promote_flow(client, v2, mae=6.0)
    assert (worse.promote, worse.staged) == (False, True)
    assert reg.get_alias_version(client, NAME, reg.PRODUCTION).version == "1"
    assert reg.get_alias_version(client, NAME, reg.STAGING).version == "2"
    assert reg.get_alias_version(client, NAME, reg.PREVIOUS_PRODUCTION) is None
    tags2 = client.get_model_version(NAME, v2).tags
    assert tags2["decision"] == "staged" and "promoted_at" not in tags2
    assert tags2["decision_reason"].startswith("staged, not promoted: v2 test MAE 6.000 is not below production v1")

    # insane candidate: neither staged nor promoted
    v3 = copy_version(client, info)
    insane = reg.decide_promotion(v3, {"mae": 1.0}, "1", {"mae": 5.0}, ["non-finite outputs"])
    reg.apply_decision(client, NAME, insane)
    assert reg.get_alias_version(client, NAME, reg.STAGING).version == "2"
    assert client.get_model_version(NAME, v3).tags["decision"] == "rejected"

    # better candidate: promoted, previous_production = old production
    v4 = copy_version(client, info)
    better = promote_flow(client, v4, mae=4.0, margin=0.5)
    assert better.promote
    assert reg.get_alias_version(client, NAME, reg.PRODUCTION).version == "4"
    assert reg.get_alias_version(client, NAME, reg.PREVIOUS_PRODUCTION).version == "1"
    assert client.get_model_version(NAME, v4).tags["replaced_version"] == "1"
    assert [v.version for v in reg.promoted_versions(client, NAME)] == ["1", "4"]
    assert reg.get_alias_version(client, NAME, reg.ROLLED_BACK) is None

    # rollback: production back to v1, who/why recorded, v4 stays findable
    result = reg.rollback(client, NAME, actor="alice", reason="v4 misreads worn coins")
    assert result == reg.RollbackResult(from_version="4", to_version="1", actor="alice", reason="v4 misreads worn coins")
    assert reg.get_alias_version(client, NAME, reg.PRODUCTION).version == "1"
    assert reg.get_alias_version(client, NAME, reg.ROLLED_BACK).version == "4"
    assert reg.get_alias_version(client, NAME, reg.PREVIOUS_PRODUCTION) is None  # never rolls forward onto v4
    from_tags = client.get_model_version(NAME, v4).tags
    assert from_tags["rolled_back_by"] == "alice"
    assert from_tags["rollback_reason"] == "v4 misreads worn coins"
    assert from_tags["rolled_back_at"] and from_tags["rolled_back_to"] == "1"
    assert from_tags["decision"] == "promoted"  # history is kept
    to_tags = client.get_model_version(NAME, v1).tags
    assert to_tags["restored_by_rollback"] == "true" and to_tags["restored_by"] == "alice"
    assert [v.version for v in reg.promoted_versions(client, NAME)] == ["1"]
    assert [v.version for v in reg.promoted_versions(client, NAME, include_rolled_back=True)] == ["1", "4"]
    assert '"actor": "alice"' in client.get_registered_model(NAME).tags[reg.ROLLBACK_HISTORY_TAG]

    # nothing older than v1 was promoted: a second rollback is refused, production unchanged
    with pytest.raises(ValueError, match="nothing to roll back to"):
        reg.rollback(client, NAME, actor="bob", reason="again")
    assert reg.get_alias_version(client, NAME, reg.PRODUCTION).version == "1"

    # an explicit target: back to v4 (the operator's call), which is no longer counted as rolled back
    again = reg.rollback(client, NAME, actor="bob", reason="worn coins were mislabelled", to_version="4")
    assert (again.from_version, again.to_version) == ("1", "4")
    assert reg.get_alias_version(client, NAME, reg.ROLLED_BACK).version == "1"
    assert client.get_model_version(NAME, "4").tags["restored_by_rollback"] == "true"
    assert [v.version for v in reg.promoted_versions(client, NAME)] == ["4"]


def test_rollback_follows_promotion_chain(store):
    client, experiment_id = store
    info = log_version(experiment_id)
    versions = [str(info.registered_model_version)] + [copy_version(client, info) for _ in range(2)]
    for version, mae in zip(versions, (5.0, 4.0, 3.0), strict=True):
        assert promote_flow(client, version, mae).promote
    assert reg.get_alias_version(client, NAME, reg.PREVIOUS_PRODUCTION).version == "2"
    assert reg.rollback(client, NAME, "alice", "v3 broke").to_version == "2"
    assert reg.get_alias_version(client, NAME, reg.PREVIOUS_PRODUCTION).version == "1"
    assert reg.rollback(client, NAME, "alice", "v2 broke too").to_version == "1"
    with pytest.raises(ValueError, match="nothing to roll back to"):
        reg.rollback(client, NAME, "alice", "and v1")


def test_rollback_refusals(store):
    client, experiment_id = store
    with pytest.raises(ValueError, match="no 'production' alias"):
        reg.rollback(client, NAME, "alice", "no model at all")
    info = log_version(experiment_id)
    with pytest.raises(ValueError, match="no 'production' alias"):
        reg.rollback(client, NAME, "alice", "nothing promoted")
    promote_flow(client, "1", 5.0)
    with pytest.raises(ValueError, match="nothing to roll back to"):
        reg.rollback(client, NAME, "alice", "only one promoted version")
    with pytest.raises(ValueError, match="actor"):
        reg.rollback(client, NAME, " ", "why")
    with pytest.raises(ValueError, match="no such version"):
        reg.rollback(client, NAME, "alice", "typo", to_version="7")
    with pytest.raises(ValueError, match="already production"):
        reg.rollback(client, NAME, "alice", "same", to_version="1")
    insane = copy_version(client, info)
    reg.apply_decision(client, NAME, reg.decide_promotion(insane, {"mae": 1.0}, "1", {"mae": 5.0}, ["NaN"]))
    with pytest.raises(ValueError, match="failed the sanity check"):
        reg.rollback(client, NAME, "alice", "insane", to_version=insane)
    assert reg.get_alias_version(client, NAME, reg.PRODUCTION).version == "1"
    assert "rolled_back_by" not in client.get_model_version(NAME, "1").tags


def test_find_version(store):
    client, experiment_id = store
    info = log_version(experiment_id)
    second = copy_version(client, info)
    for version in ("1", second):
        client.set_model_version_tag(NAME, version, "training_set_hash", "abc")
        client.set_model_version_tag(NAME, version, "config_hash", "cfg")
    assert reg.find_version(client, NAME, "abc", "cfg").version == "2"
    assert reg.find_version(client, NAME, "abc", "other") is None
    assert reg.find_version(client, "no_such_model", "abc", "cfg") is None



# --- concurrent promotions and the registry lock -----------------------------------------------------


def test_concurrent_promotions_leave_a_consistent_registry(store):
    """Two candidates evaluated against the same production are applied at the same moment: one is
    promoted, the other is staged because production moved under it; previous_production is the
    version the winner replaced, and no promoted version is lost."""
    import threading

    client, experiment_id = store
    info = log_version(experiment_id)
    promote_flow(client, "1", mae=5.0)
    v2, v3 = copy_version(client, info), copy_version(client, info)
    decisions = {v: reg.decide_promotion(v, {"mae": mae}, "1", {"mae": 5.0}, []) for v, mae in ((v2, 4.0), (v3, 3.0))}
    assert all(d.promote for d in decisions.values())  # each, alone, would be promoted over v1

    barrier, applied, errors = threading.Barrier(2), {}, []

    def apply(version):
        try:
            own = MlflowClient(tracking_uri=client._registry_uri, registry_uri=client._registry_uri)
            barrier.wait()
            applied[version] = reg.apply_decision(own, NAME, decisions[version])
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=apply, args=(v,)) for v in (v2, v3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    winners = [v for v, d in applied.items() if d.promote]
    assert len(winners) == 1, applied
    (winner,), (loser,) = winners, [v for v in applied if v not in winners]
    assert reg.get_alias_version(client, NAME, reg.PRODUCTION).version == winner
    assert reg.get_alias_version(client, NAME, reg.PREVIOUS_PRODUCTION).version == "1"
    tags = {v: client.get_model_version(NAME, v).tags for v in ("1", v2, v3)}
    assert tags[winner]["decision"] == "promoted" and tags[winner]["replaced_version"] == "1"
    assert tags["1"]["superseded_by"] == winner
    assert tags[loser]["decision"] == "staged" and "production moved from v1 to v" + winner in tags[loser]["decision_reason"]
    assert "promoted_at" not in tags[loser]
    # the chain stays walkable: a rollback goes back to v1, not to the staged loser
    assert reg.rollback(client, NAME, "alice", "drill").to_version == "1"


def test_the_registry_lock_excludes_and_times_out(store, tmp_path):
    import threading

    client, experiment_id = store
    log_version(experiment_id)
    decision = reg.decide_promotion("1", {"mae": 5.0}, None, None, [])
    assert reg.lock_target(client).endswith("mlflow.db.lock")  # beside the SQLite registry
    with reg.registry_lock(client, NAME):
        with pytest.raises(TimeoutError, match="registry lock"):
            with reg.registry_lock(client, NAME, timeout=0.3):
                pass
        waiting = threading.Thread(target=reg.apply_decision, args=(client, NAME, decision))
        waiting.start()
        waiting.join(1.0)
        assert waiting.is_alive()  # blocked on the lock
        assert reg.get_alias_version(client, NAME, reg.PRODUCTION) is None
    waiting.join(30)
    assert reg.get_alias_version(client, NAME, reg.PRODUCTION).version == "1"
    lock_file = tmp_path / "explicit.lock"
    with reg.registry_lock(client, NAME, lock_url=str(lock_file)):
        assert reg.lock_target(client, str(lock_file)) == str(lock_file)
