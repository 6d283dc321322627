"""fkstudy.runtime and fkstudy.pipeline: a stage sees only the params its dvc.yaml entry declares, an
expected failure ends the stage with one `error:` line and exit code 2, and dvc.yaml's foreach / matrix /
`${...}` are resolved to the stage names and params lists DVC uses."""
from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from fkstudy import numerics
from fkstudy.errors import StudyError
from fkstudy.params import ParamsError, load_params
from fkstudy.pipeline import PipelineError, declared_params, stages
from fkstudy.runtime import AUDIT_ENV, DeclaredParams, UndeclaredParamError, run_stage, start_stage

ROOT = Path(__file__).resolve().parents[2]
DECLARED = ["seed", "cluster", "text_features.bow"]


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


@pytest.fixture
def view(params, monkeypatch):
    monkeypatch.delenv(AUDIT_ENV, raising=False)
    return DeclaredParams(params, DECLARED, "thestage")


# ------------------------------------------------------------------------------ DeclaredParams
def test_declared_keys_read_through(view, params):
    assert view.seed == params.seed == 42
    assert view.cluster == params.cluster and view.cluster.n_seeds == params.cluster.n_seeds
    assert view.text_features.bow == params.text_features.bow
    assert view.text_features.bow.min_df == params.text_features.bow.min_df  # nested


@pytest.mark.parametrize("read, key", [
    (lambda v: v.fusion, "fusion"),
    (lambda v: v.text_features.tfidf, "text_features.tfidf"),
    (lambda v: v.text_features.fit_on, "text_features.fit_on"),  # a sibling of a declared key
    (lambda v: v.n_jobs, "n_jobs"),
])
def test_undeclared_key_is_refused_naming_it(view, read, key):
    with pytest.raises(UndeclaredParamError) as err:
        read(view)
    message = str(err.value)
    assert f"stage thestage reads params key '{key}'" in message
    assert "add it to the stage's `params:` list" in message
    assert isinstance(err.value, StudyError)  # a stage reports it on one line


def test_a_key_that_does_not_exist_at_all_is_a_plain_attribute_error(view):
    with pytest.raises(AttributeError) as err:
        view.no_such_section
    assert not isinstance(err.value, UndeclaredParamError)


def test_dump_is_exactly_the_declared_parts_as_plain_dicts(view, params):
    dumped = view.dump()
    assert dumped == {"seed": params.seed, "cluster": params.cluster.model_dump(),
                      "text_features": {"bow": params.text_features.bow.model_dump()}}
    assert type(dumped["cluster"]) is dict and type(dumped["text_features"]["bow"]) is dict
    assert json.loads(json.dumps(dumped)) == dumped  # plain JSON-able values (MLflow run params)
    assert view.text_features.dump() == {"bow": params.text_features.bow.model_dump()}


def test_audit_appends_every_read_key_as_json_lines(params, monkeypatch, tmp_path):
    audit = tmp_path / "audit.jsonl"
    audit.write_text(json.dumps({"stage": "earlier", "key": "seed"}) + "\n")  # appended to, not replaced
    monkeypatch.setenv(AUDIT_ENV, str(audit))
    view = DeclaredParams(params, DECLARED, "thestage")
    view.seed
    view.cluster.n_seeds
    view.text_features.bow.min_df
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert lines == [{"stage": "earlier", "key": "seed"}, {"stage": "thestage", "key": "seed"},
                     {"stage": "thestage", "key": "cluster"}, {"stage": "thestage", "key": "text_features.bow"}]


def test_no_audit_file_without_the_env_variable(view, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    view.seed
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ run_stage
class BadInput(StudyError):
    pass


def test_expected_failure_prints_one_error_line_and_exits_2(capsys, monkeypatch):
    monkeypatch.delenv("FKSTUDY_TRACEBACK", raising=False)

    def main():
        raise ParamsError("params: 'cluster.n_seeds' must be >= 1, got 0")

    with pytest.raises(SystemExit) as exit_:
        run_stage(main)
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert err == "error: params: 'cluster.n_seeds' must be >= 1, got 0\n" and out == ""
    assert "Traceback" not in err


def test_a_multi_line_message_is_joined_on_one_line(capsys, monkeypatch):
    monkeypatch.delenv("FKSTUDY_TRACEBACK", raising=False)

    def main():
        raise BadInput("no weights for 'x'.\nLooked in:\n  weights/x.h5\n")

    with pytest.raises(SystemExit) as exit_:
        run_stage(main)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: no weights for 'x'. | Looked in: | weights/x.h5\n"


def test_fkstudy_traceback_shows_the_traceback_too(capsys, monkeypatch):
    monkeypatch.setenv("FKSTUDY_TRACEBACK", "1")

    def main():
        raise BadInput("bad input")

    with pytest.raises(SystemExit) as exit_:
        run_stage(main)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "BadInput: bad input" in err and err.endswith("error: bad input\n")


def test_an_unexpected_exception_propagates(capsys, monkeypatch):
    monkeypatch.delenv("FKSTUDY_TRACEBACK", raising=False)

    def main():
        raise KeyError("a bug")

    with pytest.raises(KeyError, match="a bug"):
        run_stage(main)
    assert "error:" not in capsys.readouterr().err


def test_a_stage_that_succeeds_returns_normally(capsys):
    ran = []
    assert run_stage(lambda: ran.append(1)) is None
    assert ran == [1] and capsys.readouterr().err == ""


# ------------------------------------------------------------------------------ start_stage
@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A tmp repository: one stage declaring [seed, n_jobs, cluster] and a copy of the real params.yaml.
    start_stage pins threads / seeds: the env variables and thread pools it sets are restored afterwards."""
    (tmp_path / "dvc.yaml").write_text(textwrap.dedent("""\
        stages:
          thestage:
            cmd: python stages/thestage.py
            params:
              - seed
              - n_jobs
              - cluster
        """))
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "sub").mkdir()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                "PYTHONHASHSEED", AUDIT_ENV):
        if var in os.environ:
            monkeypatch.setenv(var, os.environ[var])
        else:
            monkeypatch.delenv(var, raising=False)
    state = np.random.get_state()
    with threadpool_limits(limits=None):  # restores the thread pools start_stage limits
        yield tmp_path
    np.random.set_state(state)


def test_start_stage_exposes_only_the_declared_params(repo, monkeypatch, params):
    monkeypatch.chdir(repo / "sub")
    stage = start_stage("thestage")
    assert stage.name == "thestage"
    assert Path.cwd() == repo.resolve()  # chdir to the repository root
    assert stage.params.cluster.n_seeds == params.cluster.n_seeds
    assert stage.params.seed == 42 and stage.params.n_jobs == params.n_jobs
    with pytest.raises(UndeclaredParamError, match=r"reads params key 'fusion'"):
        stage.params.fusion
    # n_jobs and seed are declared: threads pinned, global RNGs seeded
    assert os.environ["OMP_NUM_THREADS"] == str(params.n_jobs)
    assert np.random.rand() == np.random.RandomState(42).rand()


def test_start_stage_with_an_unknown_stage(repo, monkeypatch):
    monkeypatch.chdir(repo)
    with pytest.raises(PipelineError, match=r"dvc.yaml has no stage 'nosuchstage'; stages: \['thestage'\]"):
        start_stage("nosuchstage")


def test_start_stage_validates_params(repo, monkeypatch):
    text = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(text.replace("n_seeds: 5", "n_seeds: 0"))
    assert (repo / "params.yaml").read_text() != text
    monkeypatch.chdir(repo)
    with pytest.raises(ParamsError, match=r"'cluster\.n_seeds' must be >= 1, got 0"):
        start_stage("thestage")


# ------------------------------------------------------------------------------ pipeline
PIPELINE_PARAMS = """\
seed: 1
lists:
  letters: [a, b]
things:
  key: {p: 1}
  other: {p: 2}
axes:
  x: [x, z]
"""

PIPELINE = """\
vars:
  - extra: fromvars
stages:
  plain:
    cmd: python plain.py ${extra}
    params: [seed]
  s:
    foreach: ${lists.letters}
    do:
      cmd: python s.py ${item}
      params:
        - seed
        - sec.${item}
  d:
    foreach: ${things}
    do:
      cmd: python d.py ${key} ${item.p}
      params:
        - things.${key}
        - params.yaml:
            - axes.x
  m:
    matrix:
      x: ${axes.x}
      y: [y, w]
    cmd: python m.py ${item.x} ${item.y}
    params:
      - m.${item.x}
      - n.${item.y}
"""


@pytest.fixture
def pipeline_dir(tmp_path):
    (tmp_path / "params.yaml").write_text(PIPELINE_PARAMS)
    (tmp_path / "dvc.yaml").write_text(PIPELINE)
    return tmp_path


def test_stages_foreach_list_dict_and_matrix(pipeline_dir):
    got = stages(pipeline_dir)
    assert list(got) == ["plain", "s@a", "s@b", "d@key", "d@other", "m@x-y", "m@x-w", "m@z-y", "m@z-w"]
    assert got["plain"] == {"cmd": "python plain.py fromvars", "params": ["seed"]}
    assert got["s@a"] == {"cmd": "python s.py a", "params": ["seed", "sec.a"]}
    assert got["s@b"]["params"] == ["seed", "sec.b"]
    assert got["d@key"] == {"cmd": "python d.py key 1", "params": ["things.key", {"params.yaml": ["axes.x"]}]}
    assert got["d@other"]["cmd"] == "python d.py other 2"
    assert got["m@x-y"] == {"cmd": "python m.py x y", "params": ["m.x", "n.y"]}
    assert got["m@z-w"]["params"] == ["m.z", "n.w"]
    assert "matrix" not in got["m@x-y"]


def test_declared_params_flattens_params_file_entries(pipeline_dir):
    assert declared_params("d@key", pipeline_dir) == ["things.key", "axes.x"]
    assert declared_params("m@z-y", pipeline_dir) == ["m.z", "n.y"]
    with pytest.raises(PipelineError, match=r"no stage 's@c'"):
        declared_params("s@c", pipeline_dir)


def test_params_from_another_file_are_refused(pipeline_dir):
    (pipeline_dir / "dvc.yaml").write_text("stages:\n  x:\n    cmd: c\n    params:\n      - other.yaml: [k]\n")
    with pytest.raises(PipelineError, match=r"stage x: params from other.yaml are not supported"):
        declared_params("x", pipeline_dir)


def test_an_unresolvable_interpolation_is_named(pipeline_dir):
    (pipeline_dir / "dvc.yaml").write_text("stages:\n  x:\n    cmd: python x.py ${lists.nope}\n")
    with pytest.raises(PipelineError, match=r"cannot resolve \$\{lists\.nope\}"):
        stages(pipeline_dir)


def test_a_missing_dvc_yaml_is_a_pipeline_error(tmp_path):
    (tmp_path / "params.yaml").write_text(PIPELINE_PARAMS)
    with pytest.raises(PipelineError, match="cannot read dvc.yaml"):
        stages(tmp_path)


def test_bfloat16_note_only_when_a_tier_caps_onednn():
    from fkstudy import numerics
    from fkstudy.precision import bfloat16_note

    assert bfloat16_note({numerics.MODE_VAR: "native"}) is None
    for tier in numerics.TIERS:
        note = bfloat16_note({numerics.MODE_VAR: tier})
        assert "emulated" in note and numerics.TIERS[tier]["ONEDNN_MAX_CPU_ISA"] in note and "native" in note


def test_a_tier_the_cpu_cannot_run_is_refused_on_one_line(tmp_path):
    """The avx512 tier forces OpenBLAS's SkylakeX kernels: on an AVX2-only CPU (an AMD EPYC here) that was a SIGILL
    in the middle of a stage; now it is refused before any library loads."""
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse4_2 avx fma avx2 bmi2\n")
    flags = numerics.cpu_flags(str(info))
    assert flags >= {"avx2", "fma"} and "avx512f" not in flags
    numerics.check_cpu("avx2", flags)
    numerics.check_cpu("native", flags)
    with pytest.raises(RuntimeError, match=r"FKSTUDY_NUMERICS=avx512: this CPU has no AVX512F"):
        numerics.check_cpu("avx512", flags)
    numerics.check_cpu("avx512", None)   # unknown CPU (no /proc/cpuinfo): nothing to check
    assert numerics.DEFAULT_TIER == "avx2"
