"""`add_to_mlflow_run`: a bundle's own parameters and files reach the MLflow run of `--tracking mlflow`."""

from __future__ import annotations

from ignite.engine import Engine
from monai.handlers import MLFlowHandler, StatsHandler

from monaiseg.handlers import add_to_mlflow_run


def test_params_and_artifacts_reach_the_run_and_other_handlers_are_untouched(tmp_path):
    from mlflow import MlflowClient

    config, weights = tmp_path / "config_run.json", tmp_path / "model.pt"
    config.write_text("{}")
    weights.write_bytes(b"weights")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MLFlowHandler(  # as `--tracking mlflow` makes it: the executed config as its artifact
        tracking_uri=uri, experiment_name="bundle", artifacts=str(config), iteration_log=False, close_on_complete=True
    )
    stats = StatsHandler()
    add_to_mlflow_run([stats, tracker], {"params_trainable": 12}, [str(weights)])

    engine = Engine(lambda e, batch: {"loss": 0.5})
    tracker.attach(engine)
    engine.run([0, 1], max_epochs=1)

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("bundle").experiment_id])
    assert {k: run.data.params[k] for k in ("params_trainable", "max_epochs")} == {
        "params_trainable": "12",
        "max_epochs": "1",
    }
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"config_run.json", "model.pt"}
    assert not hasattr(stats, "experiment_param")


def test_without_an_mlflow_handler_nothing_changes():
    stats = StatsHandler()
    before = dict(vars(stats))
    add_to_mlflow_run([stats], {"params_trainable": 12}, ["model.pt"])
    assert vars(stats) == before
