"""Safe defaults: no unpickling of files we did not write, servers on 127.0.0.1, no secrets in params or runs.

1. The code never loads a pickle: an AST scan of src/, stages/, bench/ and scripts/ fails on
   pickle/joblib/dill/cloudpickle, `read_pickle`, `allow_pickle=True`, `torch.load` without
   `weights_only=True`, an unsafe `yaml.load`, MLflow model loading, `safe_mode=False`, and
   logging a model in a pickle format. The scanner is itself tested on a bad snippet. A pickle
   payload in a weights checkpoint or in params.yaml is refused without running.
2. Everything we document or script that starts a server (`mlflow ui`, `mlflow server`,
   `mlflow models serve`, http.server, tensorboard, jupyter) binds 127.0.0.1.
3. No secrets: params.yaml and its schema have no credential-like key or value, and an MLflow run
   made with secrets in the environment (and in the git remote) records none of them, in params,
   tags or logs.
"""
from __future__ import annotations

import ast
import logging
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fkstudy import tracking
from fkstudy.params import Params, ParamsError, load_params

ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ("src", "stages", "bench", "scripts")
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "_UniqueKeyLoader", "BaseLoader"}
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "joblib", "dill", "cloudpickle", "shelve", "marshal"}


# ------------------------------------------------------------------------------ 1. no unpickling
def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _dotted(node.func) + "()"
    return "?"


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_loads(source: str, where: str = "<snippet>") -> list[str]:
    """Every construct that could unpickle (or run code from) a file, as 'where:line: what'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{line}: import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
            found.append(f"{line}: from {node.module} import ...")
        elif isinstance(node, ast.keyword) and node.arg == "allow_pickle" and _is_true(node.value):
            found.append(f"{line}: allow_pickle=True")
        elif isinstance(node, ast.keyword) and node.arg == "safe_mode" and isinstance(node.value, ast.Constant) \
                and node.value.value is False:
            found.append(f"{line}: safe_mode=False")
        elif isinstance(node, ast.keyword) and node.arg == "serialization_format" and isinstance(node.value, ast.Constant) \
                and node.value.value != "skops":
            found.append(f"{line}: serialization_format={node.value.value!r}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            last = name.rsplit(".", 1)[-1]
            if last == "read_pickle" or last in ("unsafe_load", "full_load", "full_load_all", "unsafe_load_all"):
                found.append(f"{line}: {name}()")
            elif name in ("torch.load",) and not _is_true(_kw(node, "weights_only")):
                found.append(f"{line}: torch.load without weights_only=True")
            elif name in ("yaml.load", "yaml.load_all"):
                loader = _kw(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
                if loader is None or _dotted(loader).rsplit(".", 1)[-1] not in SAFE_YAML_LOADERS:
                    found.append(f"{line}: {name} with Loader={_dotted(loader) if loader else None}")
            elif name.startswith("mlflow.") and last == "load_model":
                found.append(f"{line}: {name}() (MLflow flavours unpickle by default)")
            elif last == "Unpickler":
                found.append(f"{line}: {name}()")
    return found


def _code_files() -> list[Path]:
    return sorted(p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts)


def test_the_scanner_finds_every_unsafe_load():
    bad = """
import pickle
import joblib as jl
from dill import load
import numpy as np, torch, yaml, pandas as pd, mlflow, keras
np.load("x.npz", allow_pickle=True)
torch.load("m.pt")
torch.load("m.pt", weights_only=False)
yaml.load(open("p.yaml"))
yaml.load(open("p.yaml"), Loader=yaml.Loader)
yaml.unsafe_load("x")
pd.read_pickle("x.pkl")
mlflow.sklearn.load_model("runs:/x/model")
mlflow.pyfunc.load_model("runs:/x/model")
keras.saving.load_model("m.keras", safe_mode=False)
mlflow.sklearn.log_model(m, name="m", serialization_format="cloudpickle")
"""
    assert len(unsafe_loads(bad)) == 14, unsafe_loads(bad)
    good = """
import numpy as np, torch, yaml
np.load("x.npz", allow_pickle=False)
torch.load("m.pt", map_location="cpu", weights_only=True)
yaml.safe_load(open("p.yaml"))
yaml.load(open("p.yaml"), Loader=yaml.SafeLoader)
mlflow.sklearn.log_model(m, name="m", serialization_format="skops")
"""
    assert unsafe_loads(good) == []


def test_no_code_loads_a_pickle():
    files = _code_files()
    assert len(files) > 30 and any(p.parts[-2] == "stages" for p in files)
    found = [hit for p in files for hit in unsafe_loads(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]
    assert found == [], "unsafe loading:\n" + "\n".join(found)
    # and the one torch.load there is, is the safe kind
    torch_models = (ROOT / "src/fkstudy/image/torch_models.py").read_text()
    assert "weights_only=True" in torch_models


def test_a_pickle_payload_in_a_weights_checkpoint_is_refused_and_not_run(tmp_path):
    """torch.load(weights_only=True) (EfficientNet-Lite0's loader) refuses a checkpoint carrying code."""
    from fkstudy.image import torch_models
    from fkstudy.image import weights as W
    from fkstudy.image.registry import weight_spec

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    lite0_file = weight_spec("efficientnet_lite0").local_names[0]
    ckpt = tmp_path / lite0_file
    ckpt.write_bytes(pickle.dumps({"stem.weight": Payload()}))
    policy = W.WeightsPolicy(dir=str(tmp_path), allow_random_init=True, allow_download=False)
    with pytest.raises(W.CorruptWeightsError, match=re.escape(lite0_file)):
        torch_models.load_lite("efficientnet_lite0", policy)
    assert not marker.exists()


def test_a_python_object_tag_in_params_yaml_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    text = (ROOT / "params.yaml").read_text().replace(
        "seed: 42", f"seed: !!python/object/apply:os.system ['touch {marker}']")
    assert text != (ROOT / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")
    assert not marker.exists()


# ------------------------------------------------------------------------------ 2. servers on 127.0.0.1
SERVER = re.compile(r"\b(mlflow\s+(ui|server|models\s+serve)|http\.server|tensorboard|jupyter(-lab|\s+lab|\s+notebook)?"
                    r"|uvicorn|gunicorn|flask\s+run|streamlit\s+run|gradio)\b")
LOCAL_BIND = re.compile(r"(--host[= ]|-h |--bind[= ]|-b |--ip[= ]|--server\.address[= ])['\"]?127\.0\.0\.1\b")


def _documented_files() -> list[Path]:
    out = [ROOT / "README.md", ROOT / ".ci/run", ROOT / "dvc.yaml"]
    out += sorted((ROOT / "scripts").glob("*")) + sorted((ROOT / "reports").glob("*.md"))
    out += sorted(p for p in ROOT.glob("*.md"))
    return [p for p in dict.fromkeys(out) if p.is_file()]


def test_every_documented_or_scripted_server_binds_localhost():
    lines = []
    for path in _documented_files() + _code_files():
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if "0.0.0.0" in line:
                lines.append(f"{path.relative_to(ROOT)}:{n}: binds every interface: {line.strip()}")
            if SERVER.search(line) and not line.lstrip().startswith(("import ", "from ")) and not LOCAL_BIND.search(line):
                lines.append(f"{path.relative_to(ROOT)}:{n}: server without --host 127.0.0.1: {line.strip()}")
    assert lines == [], "\n".join(lines)
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"mlflow ui --host 127\.0\.0\.1", readme)  # the one server we tell people to start


def test_the_bind_check_catches_an_open_server():
    for bad in ("mlflow ui", "mlflow server --host 0.0.0.0", "mlflow models serve -m runs:/x/model -p 5001",
                "python -m http.server 8000"):
        assert SERVER.search(bad) and not LOCAL_BIND.search(bad), bad
    assert LOCAL_BIND.search("mlflow ui --host 127.0.0.1 --backend-store-uri sqlite:///mlflow.db")


def test_mlflow_server_defaults_to_localhost(monkeypatch):
    """Even a bare `mlflow ui` stays local with the pinned MLflow (unless MLFLOW_HOST says otherwise)."""
    import mlflow.cli

    host = next(p for p in mlflow.cli.cli.commands["server"].params if p.name == "host")
    assert host.default == "127.0.0.1"
    for f in _documented_files():
        assert "MLFLOW_HOST" not in f.read_text(encoding="utf-8", errors="replace"), f


# ------------------------------------------------------------------------------ 3. no secrets
# a credential-like key name; a bare "token" only as the whole leaf name or its suffix (hf_token), since
# text params legitimately talk about tokens (clean_text.min_token_len)
SECRET_KEY = re.compile(r"(?i)(passw|secret|credential|api[_-]?key|access[_-]?key|private[_-]?key"
                        r"|(^|[._])([a-z]+_)?(token|auth)$)")
SECRET_VALUE = re.compile(r"(AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{20,}|hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9]{20,}"
                          r"|xox[abp]-|-----BEGIN [A-Z ]*PRIVATE KEY|://[^/\s:@]+:[^/\s@]+@)")


def _leaves(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _schema_keys(model, prefix=""):
    """Every dotted key of a pydantic params model (sections and method models walked into)."""
    import typing

    from pydantic import BaseModel

    for name, f in model.model_fields.items():
        sub = next((a for a in (f.annotation, *typing.get_args(f.annotation))
                    if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if sub is None:
            yield f"{prefix}{name}"
        else:
            yield from _schema_keys(sub, f"{prefix}{name}.")


def test_params_and_schema_hold_no_secret():
    params = dict(_leaves(yaml.safe_load((ROOT / "params.yaml").read_text())))
    schema = list(_schema_keys(Params))
    assert len(params) > 50 and len(schema) >= len(params) - 5
    assert [k for k in [*params, *schema] if SECRET_KEY.search(k)] == []
    values = [str(v) for v in params.values()]
    assert [v for v in values if SECRET_VALUE.search(v)] == []
    for bad in ("hf_" + "a" * 30, "https://user:pw@example.com/x", "AKIA" + "A" * 16):
        assert SECRET_VALUE.search(bad), bad  # the patterns work
    for bad in ("mlflow.password", "hf_token", "hub.token", "aws_secret_access_key", "openai_api_key", "auth"):
        assert SECRET_KEY.search(bad), bad
    assert not SECRET_KEY.search("clean_text.min_token_len") and not SECRET_KEY.search("data.top_spec_keys")


SECRET = "s3cr3t-Value-0xDEADBEEF"
SECRET_ENV = ("HF_TOKEN", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "MLFLOW_TRACKING_PASSWORD",
              "DB_PASSWORD", "OPENAI_API_KEY", "MY_SERVICE_KEY")


def test_runs_and_logs_never_record_environment_secrets(monkeypatch, tmp_path, caplog, capfd):
    import mlflow
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils as tracking_utils
    from mlflow.tracking.context.git_context import GitRunContext
    from mlflow.tracking.context.registry import _run_context_provider_registry as _run_context_registry

    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.setattr(fluent, "_active_experiment_id", fluent._active_experiment_id)
    for var in ("DVC_ROOT", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    for var in SECRET_ENV:
        monkeypatch.setenv(var, SECRET)
    monkeypatch.setenv("DVC_EXP_NAME", "exp-secrets")
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    (repo / "dvc.yaml").write_text("stages: {}\n")
    (repo / "stage.py").write_text("# the stage script: MLflow records git commit, branch and remote of its repo\n")
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "remote", "add", "origin", f"https://user:{SECRET}@example.com/study.git"], cwd=repo, check=True)
    subprocess.run([*git, "add", "dvc.yaml", "stage.py"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], cwd=repo, check=True)
    monkeypatch.chdir(repo)
    monkeypatch.setattr(sys, "argv", [str(repo / "stage.py")])  # run as that stage script
    for provider in _run_context_registry._registry:
        if isinstance(provider, GitRunContext):
            monkeypatch.setattr(provider, "_cache", {})  # git info is cached per process
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    caplog.set_level(logging.DEBUG)
    with tracking.run("fk-secrets", "fusion", "fusion-run", {**params["cluster"], "seed": 1},
                      tags={"features": "x"}) as r:
        mlflow.log_metric("accuracy", 0.5)
    run = mlflow.MlflowClient().get_run(r.info.run_id)
    recorded = {**run.data.params, **run.data.tags}
    assert recorded["stage"] == "fusion" and recorded["dvc_exp_name"] == "exp-secrets"
    assert recorded["mlflow.source.git.repoURL"] == "https://example.com/study.git"  # credentials stripped
    leaks = {k: v for k, v in recorded.items() if SECRET in str(v) or SECRET in k}
    assert leaks == {}, leaks
    assert [k for k in recorded if any(var.lower() in k.lower() for var in SECRET_ENV)] == []
    assert [k for k in recorded if SECRET_KEY.search(k) and not k.startswith("mlflow.")] == []
    out, err = capfd.readouterr()
    assert SECRET not in caplog.text and SECRET not in out and SECRET not in err
