"""docs/contributing.md's recipes, followed as a contributor would: in a copy of the package, a loss with a new
setting, a selector with a new setting, a selection strategy and a judge are written into the files the recipes
name, and nothing else is touched. Then, in a fresh interpreter that imports the copy, the suite's tests that read
the registries (losses, selectors, strategies, judges, the configuration and command-line errors) and the checks
of what the recipes promise (tests/contributor_checks.py) must pass: the registries are open, and a test may
check that the built-ins are there, never that nothing else is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The registry-dependent test modules, run against the copy (the default-model judge test is marked slow).
SUITE = ["tests/contributor_checks.py", "tests/test_losses.py", "tests/test_selectors.py",
         "tests/sepo/test_select_mass_project.py", "tests/tso/test_judges.py", "tests/reliability/test_bad_inputs.py",
         "tests/test_cli_help.py"]

LOSS = '''

@register("throwaway", "sigmoid DPO under another name", reference="cached",
          params={"beta": "beta", "throwaway_cap": "cap"})
def throwaway_loss(*, chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps,
                   ref_rejected_logps, beta: float = 0.1, cap: float = 10.0) -> LossOutput:
    """Sigmoid DPO, for the recipe's sake. Shapes and h as in `dpo_loss`; beta must stay below cap:

        L = -log sigmoid(beta * h)
    """
    if beta >= cap:
        raise ValueError(f"throwaway_loss: beta must be below cap={cap}, got {beta}")
    policy_c, policy_r, ratio_c, ratio_r = _logratios(
        "throwaway_loss", chosen_logps, chosen_mask, rejected_logps, rejected_mask, ref_chosen_logps,
        ref_rejected_logps)
    per_pair = -F.logsigmoid(beta * (ratio_c - ratio_r))
    return _pair_output(per_pair, beta * ratio_c, beta * ratio_r, policy_c, policy_r)

'''

SETTINGS = '''\
    throwaway_cap: float | None = option(None, "throwaway loss: beta must stay below it." + read_by("throwaway_cap"))
    first_count: int = option(2, "first selector: how many tokens of each response it keeps (the first ones).")
'''

SELECTOR = '''

@selector("first", "the first first_count tokens of every response", "a throwaway for the recipe",
          settings=("first_count",))
class FirstTokens(Selector):
    """The first `first_count` tokens of each response (at least one)."""

    def __call__(self, batch, policy_logps=None) -> torch.Tensor:
        lengths = batch.response_mask.sum(dim=1).tolist()
        return self._from_masks(batch, [np.arange(int(n)) < max(1, self.args.first_count) for n in lengths])
'''

STRATEGY = '''\
@strategy("first_k", "the first k of every response's tokens")
def first_k(ranking: Ranking, k: float, fitted, selection) -> np.ndarray:
    mask = np.zeros(len(ranking.scores), dtype=bool)
    mask[: selected_count(k, len(mask))] = True
    return mask


'''

JUDGE = '''"""A throwaway judge for the recipe: the longer answer is the better one."""

from __future__ import annotations

from tokensift.judges.base import ScoreJudge, from_spec, register


@register
class LengthJudge(ScoreJudge):
    kind = "length"
    pairwise = False
    summary = "longer is better"
    from_spec = classmethod(from_spec)

    def __init__(self, per_character: float = 1.0):
        self.per_character = per_character
        self.name = f"length:per_character={per_character:g}"

    def score_many(self, items):
        return [self.per_character * len(response) for _, response in items]
'''


def insert(path: Path, anchor: str, text: str, after: bool = False) -> None:
    """Put `text` before (after) the first line matching the regex `anchor`, where the recipe puts it."""
    source = path.read_text()
    match = re.search(anchor, source, re.M)
    assert match, f"{path.name} changed: no line matches {anchor!r}; update the recipe in test_contributing.py"
    at = source.index("\n", match.end()) + 1 if after else match.start()
    path.write_text(source[:at] + text + source[at:])


def follow_the_recipes(package: Path) -> None:
    """Each addition written where docs/contributing.md says, as plain source."""
    # a loss at the end of its family's module in losses/ (a DPO-margin loss: dpo.py), its setting in TrainConfig
    (package / "losses" / "dpo.py").write_text((package / "losses" / "dpo.py").read_text() + LOSS)
    insert(package / "train" / "config.py", r"^    selector: str = option\(", SETTINGS)
    # a selector in selectors.py (its setting is in SETTINGS), a strategy beside the others in selection.py
    (package / "selectors.py").write_text((package / "selectors.py").read_text() + SELECTOR)
    insert(package / "selection.py", r"^@dataclass\nclass SelectionArgs", STRATEGY)
    # a judge in a module of its own, imported (so registered) in judges/__init__.py after the others
    (package / "judges" / "length.py").write_text(JUDGE)
    insert(package / "judges" / "__init__.py", r"^from tokensift\.judges import functions\b.*$",
           "from tokensift.judges import length  # noqa: F401\n", after=True)


@pytest.fixture(scope="module")
def contributed(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("contributed") / "src"
    shutil.copytree(ROOT / "src" / "tokensift", src / "tokensift",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    follow_the_recipes(src / "tokensift")
    return src


def test_the_recipes_leave_the_suite_passing(contributed, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(contributed), "TOKENSIFT_CONTRIBUTED_SRC": str(contributed),
           "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
         f"--basetemp={tmp_path / 'runs'}", *SUITE],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    summary = "\n".join(line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR")))
    assert done.returncode == 0, (f"the suite fails once the recipes are followed:\n{summary}\n\n"
                                  f"{done.stdout[-6000:]}\n{done.stderr[-2000:]}")
