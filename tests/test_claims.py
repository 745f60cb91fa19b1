"""Claims and references files: the shipped ones load, bad ones fail naming file and key."""

from pathlib import Path

import pytest
import yaml

from mimetic.report.claims import SIGNS, Claim, SpecError, load_claims, load_references

REPO = Path(__file__).resolve().parents[1]
CLAIMS_SCHEMA = REPO / "workflow/schemas/claims.schema.yaml"
REFERENCES_SCHEMA = REPO / "workflow/schemas/references.schema.yaml"

CLAIM = {"experiment": "cifar10", "baseline": "default", "treatment": "mimetic", "gain": 5,
         "quote": "gains in accuracy of over 5%", "source": "Trockman & Kolter 2023, abstract"}


def write(tmp_path, name, doc):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return path


def test_shipped_claims():
    claims = {c.id: c for c in load_claims(REPO / "config" / "claims.yaml", CLAIMS_SCHEMA)}
    mimetic = {k: c for k, c in claims.items() if k.startswith("trockman")}
    assert {(c.experiment, c.gain) for c in mimetic.values()} == {("cifar10", 5), ("imagenet", 4), ("cifar10", 6)}
    assert all(c.baseline == "default" and c.treatment == "mimetic" for c in mimetic.values())
    # The successors' over mimetic: each gain the difference of the published means it cites
    refs = {r.id: r for r in load_references(REPO / "config" / "references.yaml", REFERENCES_SCHEMA)}
    for claim, ref in [("zheng2025-cifar10-impulse", "zheng2025-cifar10"), ("zheng2025-cifar100-impulse",
                       "zheng2025-cifar100"), ("saratchandran2026-imagenet-conditioned", "saratchandran2026-imagenet")]:
        c, arms = claims[claim], refs[ref].arms
        assert (c.baseline, c.experiment) == ("mimetic", refs[ref].experiment) and ref in c.note
        assert c.gain == pytest.approx(arms[c.treatment].mean - arms[c.baseline].mean)
    # the schema's default, filled in, on all but the language model's
    assert all(c.metric == "final_test_acc" for k, c in claims.items() if k != "paper-wikitext103")
    assert "over 5% and 4%" in claims["trockman2023-cifar10"].quote
    assert "ResNet-style" in claims["trockman2023-imagenet"].note
    assert "up to a 6% gain" in claims["trockman2025-thesis-cifar10"].quote
    assert "CMU-CS-25-114" in claims["trockman2025-thesis-cifar10"].source


def test_shipped_wikitext103_claim_is_direction_only():
    """The paper names no number for WikiText-103: the claim is that mimetic lowers the loss."""
    c = {c.id: c for c in load_claims(REPO / "config" / "claims.yaml", CLAIMS_SCHEMA)}["paper-wikitext103"]
    assert (c.experiment, c.baseline, c.treatment, c.metric) == ("wikitext103", "default", "mimetic", "final_val_loss")
    assert c.gain is None and c.direction == "positive" and c.sign == 1
    assert "WikiText-103" in c.quote and "no number" in c.note


def test_schema_names_what_the_code_knows():
    """The schema's metrics and directions are the report's (one owner each, checked here)."""
    from mimetic.report import compare

    claim = yaml.safe_load(CLAIMS_SCHEMA.read_text())["$defs"]["claim"]["properties"]
    assert claim["direction"]["enum"] == list(SIGNS)
    assert claim["metric"]["enum"] == [c for m in compare.METRICS.values() for c in (m.final, m.best)]


def test_direction_claims_load_and_check(tmp_path):
    doc = {k: v for k, v in CLAIM.items() if k != "gain"}
    (c,) = load_claims(write(tmp_path, "c.yaml", {"claims": {"lm": {**doc, "metric": "final_val_loss",
                                                                     "direction": "negative"}}}), CLAIMS_SCHEMA)
    assert (c.gain, c.direction, c.sign, c.metric) == (None, "negative", -1, "final_val_loss")
    with pytest.raises(ValueError, match="exactly one"):
        Claim("x", "e", "a", "b", 1.0, "q", "s", direction="positive")
    with pytest.raises(ValueError, match="exactly one"):
        Claim("x", "e", "a", "b", None, "q", "s")
    with pytest.raises(ValueError, match="'up' is none of"):
        Claim("x", "e", "a", "b", None, "q", "s", direction="up")


def test_shipped_references_are_third_party_with_sources():
    refs = {r.id: r for r in load_references(REPO / "config" / "references.yaml", REFERENCES_SCHEMA)}
    assert all(r.origin == "third_party" and r.source and r.setting for r in refs.values())
    cs = refs["cs5782-cifar10"]
    assert (cs.arms["default"].mean, cs.arms["default"].sd, cs.arms["default"].n) == (87.79, 0.38, 3)
    assert (cs.arms["mimetic"].mean, cs.arms["mimetic"].sd) == (90.92, 0.46)
    assert refs["zheng2025-cifar100"].arms["mimetic"].mean == 74.59
    assert "timm" in refs["zheng2025-cifar10"].note
    assert {r.experiment for r in refs.values() if r.id.startswith("zheng2024")} == {"cifar10", "cifar100", "imagenet"}
    assert "default" not in refs["zheng2024-imagenet"].arms and refs["zheng2024-imagenet"].arms["mimetic"].sd is None
    # The successors' own numbers, each read from a copy of it but for the authors' README
    assert refs["zheng2025-cifar10"].arms["impulse"].mean == 94.60
    assert refs["zheng2024-cifar10"].arms["impulse"].mean == 91.62 and "impulse" not in refs["zheng2024-cifar100"].arms
    assert [refs["saratchandran2026-imagenet"].arms[a].mean for a in ("default", "mimetic", "conditioned")] == [
        80.3, 80.5, 81.5]
    assert refs["xu2024-cifar100"].arms["weight-selection"].mean == 81.4
    assert {r.id for r in refs.values() if not r.secondary} == {"cs5782-cifar10", "xu2024-cifar100", "xu2024-imagenet"}


def test_user_claim_defaults(tmp_path):
    (c,) = load_claims(write(tmp_path, "c.yaml", {"claims": {"mine": {**CLAIM, "experiment": "svhn", "gain": 1.5}}}),
                       CLAIMS_SCHEMA)
    assert (c.id, c.experiment, c.gain, c.metric, c.url) == ("mine", "svhn", 1.5, "final_test_acc", None)


@pytest.mark.parametrize("doc, where, what", [
    ({"claims": {"x": {**CLAIM, "gain": "five"}}}, "claims/x/gain", "not of type 'number'"),
    ({"claims": {"x": {k: v for k, v in CLAIM.items() if k != "quote"}}}, "claims/x", "'quote' is a required"),
    ({"claims": {"x": {**CLAIM, "arm": "mimetic"}}}, "claims/x", "'arm' was unexpected"),
    ({"claims": {"x": {**CLAIM, "metric": "top5"}}}, "claims/x/metric", "'top5' is not one of"),
    ({"claims": {"x": {**CLAIM, "experiment": "cifar 10"}}}, "claims/x/experiment", "does not match"),
    ({"claims": {"x": {k: v for k, v in CLAIM.items() if k != "gain"}}}, "claims/x",
     "needs exactly one of gain or direction; it has none"),
    ({"claims": {"x": {**CLAIM, "direction": "positive"}}}, "claims/x",
     "needs exactly one of gain or direction; it has several"),
    ({"claims": {"x": {**{k: v for k, v in CLAIM.items() if k != "gain"}, "direction": "up"}}}, "claims/x/direction",
     "'up' is not one of"),
    ({"claim": {}}, "(top level)", "'claims' is a required"),
])
def test_malformed_claims_name_file_and_key(tmp_path, doc, where, what):
    path = write(tmp_path, "claims.yaml", doc)
    with pytest.raises(SpecError) as err:
        load_claims(path, CLAIMS_SCHEMA)
    assert f"{path}: {where}: " in str(err.value) and what in str(err.value)


def test_every_problem_is_listed(tmp_path):
    path = write(tmp_path, "claims.yaml", {"claims": {"a": {**CLAIM, "gain": "x"}, "b": {**CLAIM, "url": "ftp://x"}}})
    with pytest.raises(SpecError) as err:
        load_claims(path, CLAIMS_SCHEMA)
    assert "claims/a/gain" in str(err.value) and "claims/b/url" in str(err.value)


def test_same_arm_twice_and_duplicate_ids(tmp_path):
    path = write(tmp_path, "claims.yaml", {"claims": {"x": {**CLAIM, "treatment": "default"}}})
    with pytest.raises(SpecError, match=r"claims\.yaml: claims/x: baseline and treatment are both 'default'"):
        load_claims(path, CLAIMS_SCHEMA)
    text = yaml.safe_dump({"claims": {"x": CLAIM}})
    path = write(tmp_path, "dup.yaml", text + text.replace("claims:\n", ""))
    with pytest.raises(SpecError, match=r"dup\.yaml: not valid YAML: .*duplicate key 'x'"):
        load_claims(path, CLAIMS_SCHEMA)


def test_unparsable_yaml_names_the_file(tmp_path):
    path = write(tmp_path, "claims.yaml", "claims: {x: [unclosed\n")
    with pytest.raises(SpecError, match=r"claims\.yaml: not valid YAML"):
        load_claims(path, CLAIMS_SCHEMA)


REF = {"source": "someone 2024", "origin": "third_party", "experiment": "cifar10", "setting": "CIFAR-10",
       "arms": {"default": {"mean": 90.0, "sd": 0.5, "n": 3}}}


@pytest.mark.parametrize("doc, where, what", [
    ({"references": {"r": {**REF, "origin": "ours"}}}, "references/r/origin", "'ours' is not one of"),
    ({"references": {"r": {**REF, "arms": {"mimetic": {"mean": 190}}}}}, "references/r/arms/mimetic/mean",
     "190 is greater than the maximum of 100"),
    ({"references": {"r": {**REF, "arms": {"mimetic": {"sd": 1}}}}}, "references/r/arms/mimetic",
     "'mean' is a required"),
    ({"references": {"r": {**REF, "arms": {}}}}, "references/r/arms", "should be non-empty"),
    ({"references": {"r": {k: v for k, v in REF.items() if k != "setting"}}}, "references/r", "'setting'"),
])
def test_malformed_references_name_file_and_key(tmp_path, doc, where, what):
    path = write(tmp_path, "references.yaml", doc)
    with pytest.raises(SpecError) as err:
        load_references(path, REFERENCES_SCHEMA)
    assert f"{path}: {where}: " in str(err.value) and what in str(err.value)


def test_empty_references_and_missing_schema(tmp_path):
    assert load_references(write(tmp_path, "r.yaml", {"references": {}}), REFERENCES_SCHEMA) == []
    with pytest.raises(FileNotFoundError, match="schema"):
        load_references(write(tmp_path, "r.yaml", {"references": {}}), schema=tmp_path / "none.yaml")
