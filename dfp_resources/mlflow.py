"""MLflow tracking: a local SQLite store by default, a server when MLFLOW_TRACKING_URI is set."""

import dagster as dg

from dfp.tracking import EXPERIMENT, Tracker


class MLflowResource(dg.ConfigurableResource):
    tracking_uri: str

    def tracker(self, experiment: str = EXPERIMENT) -> Tracker:
        return Tracker(self.tracking_uri, experiment)
