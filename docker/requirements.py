"""Print the requirements of the package and some of its extras, one per line, read from pyproject.toml.

The Dockerfiles install these (with constraints.txt) in a layer of their own before copying the source, so the
heavy dependency layer is rebuilt only when pyproject.toml or constraints.txt change.

    python3 docker/requirements.py pyproject.toml serve > requirements.txt
"""

import sys
import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    """Return the core requirements plus those of ``extras``.

    Args:
        pyproject: path of pyproject.toml.
        extras: names of optional-dependency groups.

    Returns:
        Requirement strings as written in pyproject.toml.

    Raises:
        SystemExit: an extra is not defined in pyproject.toml.
    """
    with open(pyproject, "rb") as handle:
        project = tomllib.load(handle)["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise SystemExit(f"unknown extra(s) {unknown}; pyproject.toml defines {sorted(optional)}")
    lines = list(project.get("dependencies", []))
    for extra in extras:
        lines.extend(optional[extra])
    return lines


def main(argv: list[str]) -> int:
    """Command-line entry: ``requirements.py PYPROJECT [EXTRA[,EXTRA...]]``."""
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    extras = [extra for extra in (argv[2].split(",") if len(argv) == 3 else []) if extra]
    print("\n".join(requirements(argv[1], extras)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
