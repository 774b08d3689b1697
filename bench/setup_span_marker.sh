#!/usr/bin/env bash
# A second venv, .venv-span-marker, for the span-marker rows of bench/accuracy.py and bench/inference_speed.py.
# span-marker pulls datasets, pyarrow and pandas, which the plugin does not need, so they stay out of .venv. The new
# venv sees .venv's packages and this checkout through a .pth file, so torch, transformers and spaCy are the very
# same installs (pip finds them and installs only span-marker's own extras).
#   bash bench/setup_span_marker.sh && .venv-span-marker/bin/python bench/inference_speed.py ...
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "error: .venv is missing: run bash scripts/setup.sh first" >&2; exit 1; }
BASE=$(.venv/bin/python -c 'import sys; print(sys.base_prefix)')
"$BASE/bin/python3" -m venv .venv-span-marker
SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
NEW_SITE=$(.venv-span-marker/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n%s\n' "$PWD" "$SITE" > "$NEW_SITE/zz_spacy_spanbert_project.pth"
.venv-span-marker/bin/python -m pip install --quiet span-marker==1.8.1
.venv-span-marker/bin/python -c "import span_marker, spacy_spanbert, torch; print('span-marker', span_marker.__version__, 'torch', torch.__version__)"
