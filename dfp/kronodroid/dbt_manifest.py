"""Whether the dbt project's manifest needs preparing again (no Dagster, no dbt)."""

from pathlib import Path


def manifest_is_stale(project_dir: Path) -> bool:
    """True when target/manifest.json is missing or older than a model, test, macro or config."""
    manifest = project_dir / "target" / "manifest.json"
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = [p for p in project_dir.rglob("*") if p.suffix in (".sql", ".yml")]
    return any(p.stat().st_mtime > built for p in sources if "target" not in p.parts)
