#!/usr/bin/env bash
# Set up everything napari-cellsynth needs on a fresh Debian machine (Python 3.11, no GPU):
# Xvfb and the xcb libraries for headless napari, a virtual environment in .venv with the
# CPU torch wheel, onnxruntime (CPU), Cellpose 3, bioimage.io's libraries, napari with PyQt5 and the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-render-util0 libxcb-randr0
      libxcb-shape0 libxcb-xfixes0 libxcb-xkb1 libxkbcommon-x11-0 libgl1 libegl1 libdbus-1-3 libfontconfig1)
missing=()
for deb in "${debs[@]}"; do dpkg -s "$deb" >/dev/null 2>&1 || missing+=("$deb"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: please install with sudo: apt-get install ${missing[*]}" >&2
  fi
fi

# pip, without this machine's warnings about absent local package folders; its own failure still stops us
pip_install() {
  .venv/bin/python -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }
  return "${PIPESTATUS[0]}"
}

# uv, given pip's configuration (this machine's local wheels, indexes and constraints) and taking the best match
# over all indexes as pip does: 38 s here against pip's 81-117 s (docs/results.md §2f); pip wherever uv fails
uv_install() {
  local text options=() cert
  [ -x .venv/bin/uv ] || return 1
  # pip install's options from its configuration as pip reads them (sections global < install < environment, the
  # highest one wins); a configuration this does not translate (no-index) leaves the install to pip
  text=$(.venv/bin/python - <<'PYTHON'
import ast, subprocess, sys
listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True)
rank, chosen = {"global": 0, "install": 1, ":env:": 2}, {}
for line in listed.stdout.splitlines():  # global.find-links='/opt/wheels', :env:.extra-index-url='file:///a file:///b'
    key, _, value = line.partition("=")
    section, _, name = key.rpartition(".")
    if section not in rank:
        continue
    if name == "no-index":
        sys.exit(1)
    if name in ("find-links", "extra-index-url", "index-url", "constraint") and rank[section] >= chosen.get(name, (-1,))[0]:
        chosen[name] = (rank[section], ast.literal_eval(value).split())
for name, (_, values) in chosen.items():
    for value in values:
        print(f"--{name}\n{value}")
PYTHON
) || return 1
  [ -z "$text" ] || mapfile -t options <<< "$text"
  # the certificate pip would use, so that uv trusts the same index: $SSL_CERT_FILE, else pip's (its environment
  # variable, then its install section, then its global one)
  cert=${SSL_CERT_FILE:-${PIP_CERT:-$(.venv/bin/python -m pip config get install.cert 2>/dev/null \
    || .venv/bin/python -m pip config get global.cert 2>/dev/null || true)}}
  env ${cert:+SSL_CERT_FILE="$cert"} .venv/bin/uv pip install -q --python .venv/bin/python --compile-bytecode \
    --index-strategy unsafe-best-match "${options[@]}" "$@"
}

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip_install --upgrade pip
pip_install uv || echo "setup: uv could not be installed; installing with pip" >&2
# The CPU wheel of torch lies on this machine's disk; an unpinned torch would pull several GB of CUDA.
packages=(torch==2.13.0 -e ".[cpu,train,seg,batch,bioimageio,dev]")
if ! uv_install "${packages[@]}"; then
  echo "setup: uv could not install the environment; installing with pip" >&2
  pip_install "${packages[@]}"
fi
.venv/bin/python -c "import torch, onnxruntime, napari, cellpose, umap, napari_cellsynth; print('setup: ok, torch', torch.__version__, '| onnxruntime', onnxruntime.__version__, '| napari', napari.__version__)"
