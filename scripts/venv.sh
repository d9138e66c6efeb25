# Sourced by scripts/up, scripts/test and .ci/run: makes sure this checkout's virtual environment
# (.venv, made from Debian's own python3) exists and has triggerhub installed from this checkout,
# then sets PYTHON to its interpreter. A stock Debian python3 refuses `pip install` outside a
# virtual environment (externally-managed-environment), so nothing is installed system-wide.
#
#   th_venv_ready [EXTRAS]     e.g. th_venv_ready test  ->  pip install -e '.[test]'
#
# PYTHON set by the caller wins (no virtual environment is made then).
# shellcheck shell=bash

TH_VENV_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TH_VENV="${TH_VENV_ROOT}/.venv"

th_venv_base_python() {
    # Debian's interpreter first: the README promises a clean clone works with it.
    local candidate
    for candidate in /usr/bin/python3 "$(command -v python3 || true)"; do
        [[ -n ${candidate} && -x ${candidate} ]] && { echo "${candidate}"; return 0; }
    done
    echo "scripts/venv.sh: no python3 found; install it (apt-get install python3 python3-venv)" >&2
    return 1
}

th_venv_create() {
    local base
    base="$(th_venv_base_python)" || return 1
    if ! "${base}" -c 'import ensurepip, venv' 2>/dev/null; then
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            echo "== apt-get install python3-venv (needed for ${TH_VENV})"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null \
                || { echo "scripts/venv.sh: apt-get install python3-venv failed" >&2; return 1; }
        else
            echo "scripts/venv.sh: ${base} has no venv module; install it as root: apt-get install python3-venv" >&2
            return 1
        fi
    fi
    echo "== python3 -m venv ${TH_VENV} (first run)"
    "${base}" -m venv "${TH_VENV}" || return 1
    "${TH_VENV}/bin/python" -m pip install --disable-pip-version-check -q -U pip >/dev/null || return 1
}

th_venv_ready() {
    local extras="${1:-}" spec="." stamp want
    if [[ -n ${PYTHON:-} ]]; then
        return 0
    fi
    [[ -x ${TH_VENV}/bin/python ]] || th_venv_create || return 1
    PYTHON="${TH_VENV}/bin/python"
    export PYTHON
    [[ -n ${extras} ]] && spec=".[${extras}]"
    stamp="${TH_VENV}/.triggerhub-install.stamp"
    want="$(sha256sum "${TH_VENV_ROOT}/pyproject.toml" | cut -d' ' -f1) ${spec}"
    # A stamp for '.[test]' also covers '.', whose dependencies are a subset.
    if [[ -f ${stamp} ]] && { [[ $(cat "${stamp}") == "${want}" ]] || [[ -z ${extras} && $(cut -d' ' -f1 "${stamp}") == "${want%% *}" ]]; }; then
        return 0
    fi
    echo "== pip install -e '${spec}' into ${TH_VENV}"
    (cd "${TH_VENV_ROOT}" && "${PYTHON}" -m pip install --disable-pip-version-check -q -e "${spec}") \
        || { echo "scripts/venv.sh: pip install -e '${spec}' failed" >&2; return 1; }
    echo "${want}" >"${stamp}"
}
