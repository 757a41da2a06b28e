#!/usr/bin/env bash
# Companion step, run on the CPU machine (which reaches PyPI): download every wheel the project
# needs except torch into wheels/, so that scripts/device-check.sh can install offline on a
# machine with an accelerator and no network. torch is NOT carried: the device machine has its
# own CUDA build, which the check uses as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf wheels && mkdir -p wheels
python3 -m pip download -q -d wheels -r <(python3 - <<'PY'
import tomllib
meta = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = meta["dependencies"] + meta["optional-dependencies"]["test"]
print("\n".join(d for d in deps if not d.startswith("torch")))
PY
) setuptools wheel
python3 -m pip wheel -q --no-deps -w wheels .
echo "wheels/ ready: $(ls wheels | wc -l) files, $(du -sh wheels | cut -f1)"
