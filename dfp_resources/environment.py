"""The one place that picks embedded vs real services, from DFP_ENV.

- local (default): services from `dfp stack up`; their endpoints and credentials come from
  DFP_HOME/stack.env unless already set in the environment.
- compose / k8s: every endpoint and secret must be set in the environment (docker-compose
  file, Helm values); nothing is read from local files.
"""

import os
from typing import Any

import dagster as dg

from dfp.settings import DEFAULT_REPOSITORY, load_stack_env
from dfp_resources.lakefs import LakeFSResource

ENVIRONMENTS = ("local", "compose", "k8s")


def current_env() -> str:
    env = os.environ.get("DFP_ENV", "local")
    if env not in ENVIRONMENTS:
        raise ValueError(f"DFP_ENV={env!r} is not one of {ENVIRONMENTS}")
    return env


def build_resources(env: str | None = None) -> dict[str, Any]:
    env = env or current_env()
    if env == "local":
        load_stack_env()
        os.environ.setdefault("LAKEFS_REPOSITORY", DEFAULT_REPOSITORY)
    return {
        "lakefs": LakeFSResource(
            endpoint=dg.EnvVar("LAKEFS_ENDPOINT"),
            access_key_id=dg.EnvVar("LAKEFS_ACCESS_KEY_ID"),
            secret_access_key=dg.EnvVar("LAKEFS_SECRET_ACCESS_KEY"),
            repository=dg.EnvVar("LAKEFS_REPOSITORY"),
        ),
    }
