#!/usr/bin/env bash
# Tests of the Python client: the shared vectors, the client's rules, and a real
# `conclave host` (built here with cargo unless CONCLAVE_BIN names one).
#
#   clients/python/run-tests.sh            everything
#   clients/python/run-tests.sh -k vectors  pytest arguments are passed on
#
# Creates clients/python/.venv if missing, installs the locked test
# dependencies (requirements-test.txt) and the package itself (editable).
# Needs python3 (3.9 or newer) with venv, and cargo for the host.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "run-tests.sh: creating $venv" >&2
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements-test.txt"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$here"

if [[ -z "${CONCLAVE_BIN:-}" ]]; then
    echo "run-tests.sh: building the conclave binary for the host tests" >&2
    (cd "$root" && cargo build --quiet --locked -p conclave-cli)
fi

echo "run-tests.sh: mypy --strict" >&2
(cd "$here" && "$venv/bin/python" -m mypy)

cd "$here"
exec "$venv/bin/python" -m pytest "$@"
