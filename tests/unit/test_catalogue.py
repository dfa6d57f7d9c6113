from pathlib import Path

import pytest

from icdcoder.shared.catalogue import Catalogue, CatalogueError, load_catalogue, parse_refs
from icdcoder.shared.index_terms import read_index, read_index_csv, resolve_index_code
from tests.conftest import INDEX_CSV, require


def test_codes_descriptions_and_hierarchy(catalogue: Catalogue) -> None:
    info = catalogue.get("e119")
    assert info is not None
    assert info.description == "Type 2 diabetes mellitus without complications"
    assert info.is_leaf and info.parent == "E11" and info.chapter == "4"
    assert catalogue.ancestors("E11.9") == ["E11"]
    assert catalogue.is_ancestor("E11", "E11.9")
    assert not catalogue.is_valid("E11.99") and not catalogue.is_valid("nonsense")
    assert len(catalogue.codes) > 90_000


def test_notes_are_loaded(catalogue: Catalogue) -> None:
    j44 = catalogue.get("J44.9")
    assert j44 is not None and "Chronic obstructive lung disease NOS" in j44.inclusion_terms
    assert any("type 1 diabetes" in note for note in catalogue.codes["E11"].excludes1)


def test_parse_refs() -> None:
    refs = parse_refs("pancreatitis (K85-K86.-); type 1 (E10.-); neonatal (P70.2); (O24.4-)")
    assert [(r.first, r.last) for r in refs] == [
        ("K85", "K86"),
        ("E10", "E10"),
        ("P70.2", "P70.2"),
        ("O24.4", "O24.4"),
    ]
    assert refs[0].covers("K86.1") and not refs[0].covers("K87")
    assert refs[3].covers("O24.41") and not refs[3].covers("O24.5")


def test_excludes1_applies_through_ancestors(catalogue: Catalogue) -> None:
    # E11 (type 2) excludes1 type 1 diabetes (E10.-); the note sits on the category.
    assert catalogue.excludes1_conflict("E11.9", "E10.9")
    assert catalogue.excludes1_conflict("E10.9", "E11.9")
    assert not catalogue.excludes1_conflict("E11.9", "I10")


def test_excludes1_verdicts_remembered_within_a_bound(
    catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("icdcoder.shared.catalogue.PAIRS_REMEMBERED", 3)
    pairs = [("E11.9", "E10.9"), ("E11.9", "I10"), ("E10.9", "E11.9"), ("I10", "E11.9")]
    pairs += [("J44.9", "I10"), ("E11.9", "E10.9"), ("E10.65", "E11.9"), ("E10.65", "I10")]
    for _ in range(2):  # each answer alike asked first, remembered, or asked after a clear
        assert [catalogue.excludes1_conflict(a, b) for a, b in pairs] == [
            True, False, True, False, False, True, True, False
        ]  # fmt: skip
        assert len(catalogue._excludes1_pairs) <= 3


def test_billable_adds_default_seventh_character(catalogue: Catalogue) -> None:
    assert catalogue.billable("S02.0") == (
        "S02.0XXA",
        "7th character A (initial encounter) assumed",
    )
    assert catalogue.billable("S72.001")[0] == "S72.001A"
    assert catalogue.billable("E11.9") == ("E11.9", None)
    assert catalogue.billable("E11") == ("E11", None)  # children are real subcategories


def test_retrieval_texts_skip_seventh_character_codes(catalogue: Catalogue) -> None:
    rows = catalogue.retrieval_texts(with_index=False)
    codes = {r.code for r in rows}
    assert "S02.0" in codes and "S02.0XXA" not in codes
    assert {r.source for r in rows} == {"description", "inclusion"}


def test_index_enrichment(catalogue: Catalogue) -> None:
    loaded = read_index_csv(require(INDEX_CSV), catalogue)
    terms = loaded.texts
    assert "Hypertension, hypertensive, cardiorenal, with heart failure" in terms["I13.0"]
    assert any(t.startswith("History, personal, calculi") for t in terms["Z87.442"])
    # every code the index names is a catalogue code, never a 7th-character extension
    assert all(code in catalogue.codes and len(code.replace(".", "")) < 7 for code in terms)
    # the FY2025 index against the FY2026 tabular list: some codes mapped, few dropped
    assert loaded.mapped > 0 and 0 <= loaded.dropped < loaded.mapped
    assert loaded.source == INDEX_CSV.name


CROSS_REFERENCES_CSV = """RowID,Letter,Level,Term,See,SeeAlso,NonEssModif,Code
1,A,0,Abdominalgia,"Pain, abdominal",,,
2,G,0,"Gangrene, gangrenous",,Necrosis,(dry) (moist),I96
3,N,0,"Necrosis, necrotic",,Gangrene,(ischemic),
4,N,1,kidney,,,(bilateral),N28.0
5,N,1,renal,"Necrosis, kidney",,,
6,N,1,radiation,"Necrosis, by site",,,
7,P,0,Pain(s),,,,R52
8,P,1,abdominal,,,,R10.9
9,W,0,Wanderer,Nowhere,,,
10,D,0,Dependence,,,(on) (syndrome),F19.20
11,D,1,drug NEC,,,,F19.20
12,D,2,nicotine,,,,F17.200
13,S,0,Smoker,"Dependence, drug, nicotine",,,
14,C,0,Complication(s),,,(from) (of),T88.9
15,C,1,transfusion,,,,T80.92
16,B,0,Blood,,,,
17,B,1,transfusion reaction,"Complications, transfusion",,,
"""

CROSS_REFERENCES_XML = """<ICD10CM.index><letter><title>A</title>
<mainTerm><title>Abdominalgia</title><see>Pain, abdominal</see></mainTerm>
<mainTerm><title>Gangrene, gangrenous <nemod>(dry)</nemod></title><code>I96</code></mainTerm>
<mainTerm><title>Necrosis, necrotic</title><seeAlso>Gangrene</seeAlso>
  <term level="1"><title>kidney</title><code>N28.0</code></term>
  <term level="1"><title>renal</title><see>Necrosis, kidney</see></term>
</mainTerm>
<mainTerm><title>Pain(s)</title><code>R52</code>
  <term level="1"><title>abdominal</title><code>R10.9</code></term>
</mainTerm>
<mainTerm><title>Dependence <nemod>(on)</nemod></title><code>F19.20</code>
  <term level="1"><title>drug NEC</title><code>F19.20</code>
    <term level="2"><title>nicotine</title><code>F17.200</code></term>
  </term>
</mainTerm>
<mainTerm><title>Smoker</title><see>Dependence, drug, nicotine</see></mainTerm>
<mainTerm><title>Complication(s) <nemod>(from) (of)</nemod></title><code>T88.9</code>
  <term level="1"><title>transfusion</title><code>T80.92</code></term>
</mainTerm>
<mainTerm><title>Blood</title>
  <term level="1"><title>transfusion reaction</title><see>Complications, transfusion</see></term>
</mainTerm>
</letter></ICD10CM.index>
"""


@pytest.mark.parametrize(
    ("name", "content"), [("index.csv", CROSS_REFERENCES_CSV), ("index.xml", CROSS_REFERENCES_XML)]
)
def test_index_cross_references_lead_to_the_code_of_the_term_they_name(
    tmp_path: Path, catalogue: Catalogue, name: str, content: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    loaded = read_index([path], catalogue)
    assert "Abdominalgia" in loaded.texts["R10.9"]  # see: a subterm
    assert "Necrosis, necrotic" in loaded.texts["I96"]  # see also: "Gangrene, gangrenous"
    assert "Necrosis, necrotic, renal" in loaded.texts["N28.0"]  # under the short main term
    assert "Smoker" in loaded.texts["F17.200"]  # a reference leaves out the path's "NEC"
    assert "Blood, transfusion reaction" in loaded.texts["T80.92"]  # plural names singular
    assert loaded.followed == 5
    # a reference to a term without a code, or to none, leads nowhere
    every = {t for texts in loaded.texts.values() for t in texts}
    assert not {"Necrosis, necrotic, radiation", "Wanderer"} & every


def test_index_codes_map_to_their_longest_valid_prefix(catalogue: Catalogue) -> None:
    assert resolve_index_code("E11.9", catalogue) == "E11.9"
    assert resolve_index_code("E11.-", catalogue) == "E11"
    assert resolve_index_code("S72.001A", catalogue) == "S72.001"  # 7th character: its parent
    assert resolve_index_code("E11.98", catalogue) == "E11.9"  # not in FY2026: its parent
    assert resolve_index_code("ZZZ", catalogue) is None


def test_index_missing_or_malformed(tmp_path: Path, catalogue: Catalogue) -> None:
    with pytest.raises(CatalogueError, match="not found"):
        read_index_csv(tmp_path / "missing.csv", catalogue)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(CatalogueError, match="not a flattened"):
        read_index_csv(bad, catalogue)


def test_categories_named_like_their_block_are_codes(catalogue: Catalogue) -> None:
    # B20, C50, D49, R99 ... name both a block and its only category.
    hiv = catalogue.get("B20")
    assert hiv is not None and hiv.is_leaf and hiv.parent is None
    assert hiv.description == "Human immunodeficiency virus [HIV] disease"
    assert catalogue.ancestors("C50.919") == ["C50.91", "C50.9", "C50"]
    assert catalogue.get("R99") is not None and catalogue.get("D49.0") is not None
    assert catalogue.ancestors("D49.0") == ["D49"]


def test_single_notes_are_not_split_into_characters(catalogue: Catalogue) -> None:
    hiv = catalogue.get("B20")
    assert hiv is not None and len(hiv.code_first) == 1
    assert hiv.code_first[0].startswith("Human immunodeficiency virus [HIV] disease complicating")
    assert all(
        len(note) > 1
        for info in catalogue.codes.values()
        for notes in (info.inclusion_terms, info.excludes1, info.code_first, info.use_additional)
        for note in notes
    )


def test_the_parsed_catalogue_is_cached_and_read_back(tmp_path: Path, catalogue: Catalogue) -> None:
    first = load_catalogue(cache_dir=tmp_path)
    (cached,) = tmp_path.glob("catalogue-*.pickle")
    assert first.codes == catalogue.codes
    cached.write_bytes(cached.read_bytes()[:1000])  # a torn file: parsed again, and rewritten
    assert load_catalogue(cache_dir=tmp_path).codes == catalogue.codes
    assert load_catalogue(cache_dir=tmp_path, index_terms={"I10": ("HTN",)}).index_terms == {
        "I10": ("HTN",)
    }
    unwritable = tmp_path / "a-file"
    unwritable.write_text("")
    assert load_catalogue(cache_dir=unwritable).codes == catalogue.codes  # no cache, no error


MAIN_INDEX_XML = """<?xml version="1.0" encoding="utf-8"?>
<ICD10CM.index>
  <version>2026</version>
  <title>ICD-10-CM INDEX TO DISEASES and INJURIES</title>
  <letter><title>F</title>
    <mainTerm>
      <title>Fibrillation</title>
      <term level="1">
        <title>atrial or auricular<nemod>(established)</nemod></title>
        <code>I48.91</code>
        <term level="2"><title>paroxysmal</title><code>I48.0</code></term>
        <term level="2"><title>permanent</title><see>Fibrillation, atrial, chronic</see></term>
      </term>
    </mainTerm>
  </letter>
</ICD10CM.index>
"""

NEOPLASM_XML = """<?xml version="1.0" encoding="utf-8"?>
<ICD10CM.index>
  <version>2026</version>
  <indexHeading>
    <head col="1">Neoplasm</head><head col="2">Malignant Primary</head>
    <head col="3">Malignant Secondary</head><head col="4">Ca in situ</head>
  </indexHeading>
  <letter><title>N</title>
    <mainTerm>
      <title>Neoplasm, neoplastic</title>
      <term level="1">
        <title>lung</title>
        <cell col="2">C34.9-</cell><cell col="3">C78.0-</cell><cell col="4">-</cell>
      </term>
    </mainTerm>
  </letter>
</ICD10CM.index>
"""


def test_index_xml_term_paths_and_codes(tmp_path: Path, catalogue: Catalogue) -> None:
    main = tmp_path / "icd10cm-index-2026.xml"
    main.write_text(MAIN_INDEX_XML)
    loaded = read_index([main], catalogue)
    assert loaded.texts["I48.91"] == ("Fibrillation, atrial or auricular",)  # no nemod
    assert loaded.texts["I48.0"] == ("Fibrillation, atrial or auricular, paroxysmal",)
    assert len(loaded.texts) == 2  # a "see" cross-reference carries no code


def test_index_table_cells_carry_their_heading(tmp_path: Path, catalogue: Catalogue) -> None:
    table = tmp_path / "neoplasm.xml"
    table.write_text(NEOPLASM_XML)
    csv_table = tmp_path / "neoplasms.csv"
    csv_table.write_text(
        "RowID,Level,Term,SeeAlso,NonEssModif,MalignantPrimary,MalignantSecondary,CaInSitu\n"
        '1,0,"Neoplasm, neoplastic",,,C80.1,C79.9,D09.9\n'
        "2,1,lung,,,C34.9-,C78.0-,-\n"
    )
    from_xml = read_index([table], catalogue).texts
    assert from_xml["C34.9"] == ("Neoplasm, neoplastic, lung, malignant primary",)
    assert from_xml["C78.0"] == ("Neoplasm, neoplastic, lung, malignant secondary",)
    from_csv = read_index([csv_table], catalogue)
    assert from_csv.texts["C34.9"] == from_xml["C34.9"]
    assert from_csv.texts["C80.1"] == ("Neoplasm, neoplastic, malignant primary",)
    both = read_index([table, csv_table], catalogue)
    assert both.source == "neoplasm.xml + neoplasms.csv"
    assert both.texts["C34.9"] == from_xml["C34.9"]  # the same path once


def test_index_xml_refused_when_not_an_index(tmp_path: Path, catalogue: Catalogue) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_text("<ICD10CM.index><letter>")
    with pytest.raises(CatalogueError, match="not XML"):
        read_index([broken], catalogue)
    other = tmp_path / "tabular.xml"
    other.write_text("<ICD10CM.tabular/>")
    with pytest.raises(CatalogueError, match="not an ICD-10-CM index"):
        read_index([other], catalogue)
    with pytest.raises(CatalogueError, match="not found"):
        read_index([tmp_path / "missing.xml"], catalogue)


def test_official_cms_xml_reads(catalogue: Catalogue) -> None:
    eindex = require(INDEX_CSV.parent / "icd10cm-eindex-April-1-2026-XML.xml")
    loaded = read_index([eindex], catalogue)
    assert any(p.startswith("Accident, transport") for p in loaded.texts["V73.9"])
    assert len(loaded.texts) > 1_000 and loaded.dropped < loaded.mapped + 100


@pytest.mark.parametrize(
    ("code", "assigned"),
    [
        ("N17", "N17.9"),  # a category: its unspecified leaf
        ("I21", "I21.9"),  # "Acute myocardial infarction, unspecified", not I21.3 "... site"
        ("C64", "C64.9"),  # unspecified laterality
        ("F17.2", "F17.200"),  # down two levels: unspecified, then uncomplicated
        ("E11", "E11.9"),  # "without complications"
        ("K21", "K21.9"),  # "Gastro-esophageal reflux disease without esophagitis"
        ("O43.8", "O43.899"),  # "Other placental disorders", then unspecified trimester
        ("I10", "I10"),  # a leaf stays
        ("H50.11", "H50.11"),  # right or left eye, and no unspecified one
        ("T60.9", "T60.9"),  # the intent is to be stated: no default
        ("S02.0", "S02.0"),  # 7th-character children: billable() gives S02.0XXA
        ("nonsense", "nonsense"),
    ],
)
def test_assignable_is_the_default_leaf(catalogue: Catalogue, code: str, assigned: str) -> None:
    assert catalogue.assignable(code) == assigned
    if assigned != code:
        assert catalogue.is_leaf(assigned) and catalogue.is_ancestor(code, assigned)
