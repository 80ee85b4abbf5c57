#!/usr/bin/env bash
# What a user gets from `pip install`: build the sdist and the wheel (`python -m build`: the sdist,
# then the wheel from the unpacked sdist), install the WHEEL with the `notebook` extra and JupyterLab
# into a fresh .venv-wheel with no node/npm/jlpm on PATH, then check that both Jupyter extensions are
# installed and enabled and that notebooks/01-quickstart.ipynb runs from that install (in a
# directory outside the checkout, so the wheel's package is imported, not ./starburst_jupyter).
# Artifacts: artifacts/01-quickstart-wheel.ipynb, artifacts/freeze-wheel.txt,
# artifacts/wheel-extensions.txt, artifacts/wheel-build.log.
set -euo pipefail
source "$(dirname "$0")/common.sh"
stage_begin wheel "build sdist + wheel, install the wheel without node, extensions and quickstart"

ROOT=$PWD
WORK=$(mktemp -d "${TMPDIR:-/tmp}/starburst-wheel.XXXXXX")
trap 'rc=$?; rm -rf "$WORK"; stage_end $rc' EXIT
fail() { echo "wheel stage: $*" >&2; exit 1; }
strip_ansi() { sed 's/\x1b\[[0-9;]*m//g'; }

# 1. Build with the normal PATH (node is there if the labextension needs a rebuild; it is built
#    only when missing or older than labextension/src).
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -c .ci/test-tools.txt build  # the lock's version of the test tool
rm -rf dist
.venv/bin/python -m build --outdir dist . > artifacts/wheel-build.log 2>&1 \
    || { tail -n 60 artifacts/wheel-build.log; fail "python -m build failed (artifacts/wheel-build.log)"; }
grep -E '^Successfully built' artifacts/wheel-build.log
wheels=(dist/starburst_jupyter-*.whl) sdists=(dist/starburst_jupyter-*.tar.gz)
[ ${#wheels[@]} -eq 1 ] && [ -f "${wheels[0]}" ] || fail "expected one wheel in dist/, found: $(ls dist)"
[ ${#sdists[@]} -eq 1 ] && [ -f "${sdists[0]}" ] || fail "expected one sdist in dist/, found: $(ls dist)"
WHEEL=$ROOT/${wheels[0]}

# The wheel carries the prebuilt labextension and the config that enables the server extension;
# the sdist carries the prebuilt labextension too (so a wheel built from it needs no node).
python3 - "${wheels[0]}" "${sdists[0]}" <<'PY'
import sys, tarfile, zipfile
wheel, sdist = sys.argv[1:]
names = zipfile.ZipFile(wheel).namelist()
data = "starburst_jupyter-{}.data/data/".format(wheel.split("-")[1])
lab = data + "share/jupyter/labextensions/starburst-jupyter/"
need = [lab + "package.json", lab + "install.json",
        data + "etc/jupyter/jupyter_server_config.d/starburst_jupyter.json"]
missing = [n for n in need if n not in names]
if not any(n.startswith(lab + "static/remoteEntry.") for n in names):
    missing.append(lab + "static/remoteEntry.*.js")
in_sdist = tarfile.open(sdist).getnames()
if not any(n.endswith("starburst_jupyter/server/labextension/package.json") for n in in_sdist):
    missing.append(sdist + ": starburst_jupyter/server/labextension/package.json")
if missing:
    sys.exit("missing from the build:\n  " + "\n  ".join(missing))
# Local build state must not ship (node_modules, the yarn cache, virtualenvs: tens of MB).
junk = sorted({part for n in names + in_sdist for part in n.split("/")
               if part in {"node_modules", ".yarn"} or part.startswith(".venv")})
if junk:
    sys.exit(f"the sdist or wheel contains local build state: {', '.join(junk)}")
print(f"wheel: labextension and server extension config present, {len(names)} files; "
      f"sdist: {len(in_sdist)} files")
PY

# 2. A PATH without node: the fresh venv's bin, then links to everything in /usr/bin and /bin except
#    the JavaScript tool chain.
mkdir -p "$WORK/bin"
for dir in /usr/bin /bin; do
    for tool in "$dir"/*; do
        name=${tool##*/}
        case $name in node|nodejs|npm|npx|yarn|yarnpkg|jlpm|corepack|pnpm) continue ;; esac
        [ -e "$WORK/bin/$name" ] || ln -s "$tool" "$WORK/bin/$name"
    done
done
rm -rf .venv-wheel
python3 -m venv .venv-wheel
mkdir -p "$WORK/home" "$WORK/jupyter-config" "$WORK/jupyter-data" "$WORK/jupyter-runtime" "$WORK/ipython" "$WORK/run"
# The user's Jupyter/IPython/starburst settings and ~/.local site-packages stay out of it.
run_no_node() {
    env -u PYTHONPATH -u VIRTUAL_ENV PATH="$ROOT/.venv-wheel/bin:$WORK/bin" PYTHONNOUSERSITE=1 \
        JUPYTER_CONFIG_DIR="$WORK/jupyter-config" JUPYTER_DATA_DIR="$WORK/jupyter-data" \
        JUPYTER_RUNTIME_DIR="$WORK/jupyter-runtime" IPYTHONDIR="$WORK/ipython" STARBURST_HOME="$WORK/home" "$@"
}
for tool in node npm npx jlpm yarn; do
    if found=$(run_no_node bash -c "command -v $tool"); then fail "$tool is on the no-node PATH ($found)"; fi
done
echo "no node, npm, npx, jlpm or yarn on PATH"

# 3. Install the wheel, as a user would, plus JupyterLab (to list the lab extensions).
run_no_node pip install -q --disable-pip-version-check "$WHEEL[notebook]" jupyterlab
run_no_node pip freeze --disable-pip-version-check > artifacts/freeze-wheel.txt
echo "installed ${WHEEL##*/}[notebook] + jupyterlab; resolved versions: artifacts/freeze-wheel.txt"

# 4. Both extensions installed and enabled from the environment alone.
cd "$WORK/run"
{
    echo '$ jupyter labextension list'; run_no_node jupyter labextension list 2>&1 | strip_ansi
    echo '$ jupyter server extension list'; run_no_node jupyter server extension list 2>&1 | strip_ansi
} > "$ROOT/artifacts/wheel-extensions.txt" || true
cat "$ROOT/artifacts/wheel-extensions.txt"
grep -Eq '^\s*starburst-jupyter v[0-9][^ ]* +enabled +OK' "$ROOT/artifacts/wheel-extensions.txt" \
    || fail "jupyter labextension list does not show starburst-jupyter enabled and OK"
# The server extension modules are the ones the wheel's jupyter_server_config.d file enables
# (starburst_jupyter.server today).
config=$ROOT/.venv-wheel/etc/jupyter/jupyter_server_config.d/starburst_jupyter.json
[ -f "$config" ] || fail "the wheel did not install $config"
modules=$(python3 - "$config" <<'PY'
import json, sys
extensions = json.load(open(sys.argv[1]))["ServerApp"]["jpserver_extensions"]
print("\n".join(name for name, on in extensions.items() if on))
PY
)
[ -n "$modules" ] || fail "$config enables no server extension"
for module in $modules; do
    pattern=${module//./\\.}
    grep -Eq "^\s*$pattern +enabled" "$ROOT/artifacts/wheel-extensions.txt" \
        || fail "jupyter server extension list does not show $module enabled"
    grep -Eq "^\s*$pattern( +[^ ]+)? +OK" "$ROOT/artifacts/wheel-extensions.txt" \
        || fail "jupyter server extension list does not validate $module (no OK)"
done
echo "lab extension starburst-jupyter and server extension(s) $modules: enabled and OK"

# 5. The quickstart notebook, run in $WORK/run with the wheel's package.
where=$(run_no_node python -c 'import starburst_jupyter; print(starburst_jupyter.__file__)')
site=$(run_no_node python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "starburst_jupyter imported from $where"
[ "$where" = "$site/starburst_jupyter/__init__.py" ] \
    || fail "starburst_jupyter is imported from $where, not from .venv-wheel's site-packages ($site)"
cp "$ROOT/notebooks/01-quickstart.ipynb" .
run_no_node jupyter execute --kernel_name=python3 --output=01-quickstart-wheel 01-quickstart.ipynb
cp 01-quickstart-wheel.ipynb "$ROOT/artifacts/01-quickstart-wheel.ipynb"
echo "quickstart ran from the wheel: artifacts/01-quickstart-wheel.ipynb"
