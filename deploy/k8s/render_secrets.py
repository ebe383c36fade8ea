"""Print deploy/k8s/secrets.example.yaml with its placeholders filled from an env file.

    python3 deploy/k8s/render_secrets.py --env .env | kubectl apply -n dfp -f -

Each CHANGE_ME_<VAR> becomes the value of VAR in the env file (docker-compose's .env, see
deploy/compose/env.example and fill_env.py), so compose and Kubernetes can share one set of
secrets and a password used by two services is written once. Standard library only; the
output goes to stdout, never to a file in the repository.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "secrets.example.yaml"
PLACEHOLDER = re.compile(r"CHANGE_ME_([A-Z][A-Z0-9_]*)")


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def render(template: str, values: dict[str, str]) -> str:
    missing = sorted({m for m in PLACEHOLDER.findall(template) if not values.get(m)})
    if missing:
        raise SystemExit(f"render_secrets: no value for {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", type=Path, required=True, help="KEY=VALUE file, e.g. .env")
    args = parser.parse_args(argv)
    sys.stdout.write(render(TEMPLATE.read_text(), read_env(args.env)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
