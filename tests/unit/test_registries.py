"""One place to add a method: the registries, params.yaml, the params schema and dvc.yaml / dvc.lock agree.

Each assertion names the odd one out, so adding a representation and forgetting one of the places
says which.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fkstudy import paths
from fkstudy.image.params import DeepFeaturesParams, ImageFeaturesParams
from fkstudy.image.registry import IMAGE, backbones, weight_spec
from fkstudy.params import Params, load_params
from fkstudy.pipeline_params import feature_sets
from fkstudy.pipeline import declared_params, stages
from fkstudy.registry import UnknownMethodError
from fkstudy.text.params import TextFeaturesParams
from fkstudy.text.registry import TEXT
from fkstudy.train.heads import HEADS, HeadParams

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="module")
def pipeline() -> dict:
    return stages(ROOT)


def same(what: str, expected, got) -> None:
    """Equal as ordered lists, else an error naming what is missing and what is extra."""
    expected, got = list(expected), list(got)
    missing, extra = [x for x in expected if x not in got], [x for x in got if x not in expected]
    assert not missing and not extra and expected == got, (
        f"{what}: missing {missing}, not registered / extra {extra}" if missing or extra
        else f"{what}: same names in another order: {got} vs {expected}")


def instances(pipeline: dict, stage: str) -> list[str]:
    return [name.split("@", 1)[1] for name in pipeline if name.startswith(stage + "@")]


def optional(name: str) -> bool:
    """A deep representation whose weights only a download can bring (no package here carries them, the `pretrained`
    stage cannot fill them): not in the default pipeline, where it could only run with random weights."""
    spec = weight_spec(name)
    return spec.package is None and not spec.refill


def test_params_lists_are_the_registries(params):
    """The default pipeline runs every registered method except the optional download-only ones."""
    p = params.pipeline
    deep = [n for n in IMAGE.names("deep") if not optional(n)]
    same("pipeline.text vs the text registry", TEXT.names(), p.text)
    same("pipeline.text_terms vs the text methods with a vocabulary",
         [n for n, e in TEXT.items() if e.extra.get("vocabulary")], p.text_terms)
    same("pipeline.image vs the classical image registry entries", IMAGE.names("classical"), p.image)
    same("pipeline.deep vs the deep image registry entries with weights here", deep, p.deep)
    same("pipeline.cluster vs every feature set of the default pipeline",
         [s for s in feature_sets() if not (s.startswith("image_") and optional_set(s))], p.cluster)
    same("pipeline.backbones vs the registry backbones with weights here", [b for b in backbones() if b in deep],
         p.backbones)
    assert set(p.multiseed) <= set(deep)
    assert {n for n in IMAGE.names("deep") if optional(n)} == {"clip", "efficientnetb0", "mobilenetv3small"}


def optional_set(feature_set: str) -> bool:
    name = feature_set[len("image_"):]
    return IMAGE[name].kind == "deep" and optional(name)


def test_schema_sections_are_the_registries(params):
    same("text_features sections", TEXT.names(), [f for f in TextFeaturesParams.model_fields if f != "fit_on"])
    same("image_features sections", IMAGE.names("classical"), ImageFeaturesParams.model_fields)
    same("deep_features sections", IMAGE.names("deep"), DeepFeaturesParams.model_fields)
    for name, entry in TEXT.items():
        assert isinstance(getattr(params.text_features, name), entry.params), name
    for name, entry in IMAGE.items():
        section = params.deep_features if entry.kind == "deep" else params.image_features
        assert isinstance(getattr(section, name), entry.params), name
    assert HeadParams.model_fields["type"].annotation.__args__ == HEADS.names()


def test_dvc_stage_names_are_the_params_lists(params, pipeline):
    p = params.pipeline
    same("dvc.yaml text_features@", p.text, instances(pipeline, "text_features"))
    same("dvc.yaml text_classifier@", p.text, instances(pipeline, "text_classifier"))
    same("dvc.yaml image_features@", p.image, instances(pipeline, "image_features"))
    same("dvc.yaml deep_features@", p.deep, instances(pipeline, "deep_features"))
    same("dvc.yaml cluster@", p.cluster, instances(pipeline, "cluster"))
    same("dvc.yaml augment@", p.backbones, instances(pipeline, "augment"))
    same("dvc.yaml train@", [f"{b}-{v}" for b in p.backbones for v in p.variants], instances(pipeline, "train"))
    same("dvc.yaml multiseed@", p.multiseed, instances(pipeline, "multiseed"))
    same("dvc.yaml catalog_text@", p.catalog_text, instances(pipeline, "catalog_text"))
    same("dvc.yaml catalog_image@", p.catalog_image, instances(pipeline, "catalog_image"))
    same("dvc.yaml score_catalog@", p.score_catalog, instances(pipeline, "score_catalog"))


def test_catalogue_jobs_write_the_paths_module_and_depend_on_their_weights():
    """The catalogue-scale stages (no instance by default: checked on their `@_` placeholder instance)."""
    by_default = stages(ROOT)
    assert not any(n.split("@")[0] in ("catalog_text", "catalog_image", "score_catalog") for n in by_default)
    ph = stages(ROOT, placeholders=True)

    def outs(stage):
        return [next(iter(o)) if isinstance(o, dict) else o for o in ph[stage].get("outs", [])]

    for modality in ("text", "image"):
        stage = f"catalog_{modality}@_"
        assert outs(stage) == [paths.catalog_features(modality, "_"), paths.catalog_failures(modality, "_")]
        assert paths.weights_record(modality, "_") in ph[stage]["deps"]
    assert outs("score_catalog@_") == [paths.catalog_predictions("_")]


def test_dvc_lock_holds_every_stage_and_no_other(pipeline):
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    same("dvc.lock stages vs dvc.yaml", sorted(pipeline), sorted(lock))


def test_feature_outputs_are_the_paths_module(params, pipeline):
    """Each representation's stage writes the feature file fkstudy.paths names, and cluster reads it."""
    def outs(stage):
        return [next(iter(o)) if isinstance(o, dict) else o for o in pipeline[stage].get("outs", [])]

    for name in params.pipeline.text:
        assert paths.features("text", name) in outs(f"text_features@{name}"), name
    for name in params.pipeline.image:
        assert paths.features("image", name) in outs(f"image_features@{name}"), name
    for name in params.pipeline.deep:
        assert paths.features("image", name) in outs(f"deep_features@{name}"), name
    for name in params.pipeline.cluster:
        assert paths.feature_set(name) in pipeline[f"cluster@{name}"]["deps"], name
    for name in params.pipeline.backbones:
        assert paths.augmented(name) in outs(f"augment@{name}"), name


def test_each_representation_depends_on_its_own_weights_record(params, pipeline):
    for name in params.pipeline.text:
        assert paths.weights_record("text", name) in pipeline[f"text_features@{name}"]["deps"], name
    for name in params.pipeline.deep:
        assert paths.weights_record("image", name) in pipeline[f"deep_features@{name}"]["deps"], name


def test_our_dvc_yaml_reader_agrees_with_dvc():
    """fkstudy.pipeline (used at every stage start, without importing DVC) resolves the same stages and the
    same declared params as DVC itself."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        theirs = {s.addressing: sorted(k for d in s.deps if isinstance(d, ParamsDependency) for k in d.params)
                  for s in repo.index.stages}
    mine = stages(ROOT)
    same("stage names: fkstudy.pipeline vs DVC", sorted(theirs), sorted(mine))
    for name in theirs:
        assert sorted(declared_params(name, ROOT)) == theirs[name], name


def test_entries_load_their_functions_and_describe_themselves():
    for registry in (TEXT, IMAGE, HEADS):
        for name, entry in registry.items():
            assert callable(entry.load()), f"{registry.what} {name}: {entry.function} does not load"
            assert entry.description and entry.framework and entry.weights, name
    for name in IMAGE.names("deep"):
        spec = weight_spec(name, getattr(load_params(ROOT / "params.yaml").deep_features, name))
        assert spec.model == name and spec.local_names, name


def test_unknown_method_is_named():
    with pytest.raises(UnknownMethodError, match=r"unknown text representation 'bertt'.*'bert'"):
        TEXT["bertt"]
    with pytest.raises(UnknownMethodError, match="is a classical image representation, not deep"):
        IMAGE.check("classical", "deep")


def test_the_methods_sections_name_are_the_registries(params):
    """fusion.text_set, cluster.*_by_set, ... are checked against params.yaml's method keys (fkstudy.schema.methods),
    so a stage loading them imports no registry: those keys must be the registries' names."""
    import yaml

    from fkstudy.schema import feature_set_names, methods

    class Info:
        context = {"raw": yaml.safe_load((ROOT / "params.yaml").read_text())}

    same("methods of text_features", sorted(TEXT.names()), sorted(methods(Info, "text_features")))
    same("methods of image_features", sorted(IMAGE.names("classical")), sorted(methods(Info, "image_features")))
    same("methods of deep_features", sorted(IMAGE.names("deep")), sorted(methods(Info, "deep_features")))
    assert feature_set_names(Info) == set(feature_sets())
